package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/analytics"
	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/ingest"
	"github.com/allot-dev/allot/internal/leanhttp"
	"github.com/allot-dev/allot/metrics"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/rating"
	"github.com/allot-dev/allot/webhooks"
)

// nodeConfig is everything serve (and bench) needs to run a node.
type nodeConfig struct {
	DataDir                 string
	NATSURL                 string // external NATS; empty = embedded
	NATSListen              string // embedded client listener host:port, "off" for in-process only
	HTTPAddr                string
	ClickHouseDSN           string
	ConfigFile              string
	DedupWindow             time.Duration
	UsagePartitions         int
	QuotaLanes              int // 0: the ledger stream's (1 for a new one)
	Replicas                int
	FsyncAlways             bool
	MaxBody                 int64
	UsageQueryTimeout       time.Duration
	SnapshotEvery           time.Duration   // rating snapshots; default 2s
	RatingLinger            time.Duration   // how long a rating fetch may wait to fill; default 100ms
	ProjectionSnapshotEvery time.Duration   // ledger projection snapshots; default 10s
	NoRating                bool            // run no rating workers (the bench measures raw baselines with it)
	KeyRequestsPerMinute    int64           // allot's own API: requests per key per minute per process
	WebhookRetryScale       float64         // multiplies the retry schedule (tests shrink it); default 1
	WebhookTimeout          time.Duration   // one delivery attempt; default 15 s
	WebhooksAllowPrivate    bool            // endpoints on loopback or private addresses allowed
	ExpiryGrace             time.Duration   // after a block's expiry; default 1 min
	Roles                   map[string]bool // nil: every role
	Log                     *slog.Logger
}

// node is one running allot process: NATS (embedded or not), the catalog, the API.
type node struct {
	cfg        nodeConfig
	embedded   *bus.Embedded
	nc         *nats.Conn
	js         jetstream.JetStream
	extra      []*nats.Conn // one per pipeline stage, so stages never queue behind each other's traffic
	cat        *catalog.Catalog
	ingester   *ingest.Ingester
	ledger     *projector.Ledger
	quotaLanes int // the ledger stream's (bus.QuotaLanes)
	expirer    *projector.Expirer
	raters     []*rating.Worker
	member     string
	metrics    *metrics.Registry
	ch         clickhouse.Conn
	sink       *analytics.Sink
	notifier   *webhooks.Notifier
	dispatcher *webhooks.Dispatcher
	httpSrv    *leanhttp.Server
	httpLn     net.Listener
	cancel     context.CancelFunc
	wg         sync.WaitGroup
	bgErr      chan error
}

func startNode(ctx context.Context, cfg nodeConfig) (_ *node, err error) {
	n := &node{cfg: cfg, metrics: metrics.New(), cat: catalog.New(), bgErr: make(chan error, 4)}
	defer func() {
		if err != nil {
			n.close(context.Background())
		}
	}()
	log := cfg.Log
	if cfg.NATSURL == "" {
		host, port, err := parseListen(cfg.NATSListen)
		if err != nil {
			return nil, exitWith(2, err)
		}
		n.embedded, err = bus.StartEmbedded(bus.EmbeddedOptions{
			DataDir: cfg.DataDir, Host: host, Port: port, SyncAlways: cfg.FsyncAlways, Logger: log,
		})
		if err != nil {
			return nil, exitWith(3, err)
		}
		n.nc, err = nats.Connect("", nats.InProcessServer(n.embedded.Server), nats.Name("allot"), nats.MaxReconnects(-1))
		if err != nil {
			return nil, exitWith(4, fmt.Errorf("connecting to embedded NATS: %w", err))
		}
		log.Info("embedded NATS started", "store", filepath.Join(cfg.DataDir, "jetstream"), "clients", n.embedded.ClientURL())
	} else {
		n.nc, err = nats.Connect(cfg.NATSURL, nats.Name("allot"), nats.MaxReconnects(-1), nats.Timeout(5*time.Second),
			nats.RetryOnFailedConnect(false),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) { log.Warn("NATS disconnected", "err", err) }),
			nats.ReconnectHandler(func(c *nats.Conn) { log.Info("NATS reconnected", "url", c.ConnectedUrlRedacted()) }))
		if err != nil {
			return nil, exitWith(4, fmt.Errorf("connecting to NATS at %s: %w", cfg.NATSURL, err))
		}
		log.Info("connected to NATS", "url", n.nc.ConnectedUrlRedacted())
	}
	n.js, err = jetstream.New(n.nc, jetstream.WithPublishAsyncMaxPending(8192))
	if err != nil {
		return nil, exitWith(4, fmt.Errorf("opening JetStream: %w", err))
	}
	// Startup against a cluster may meet an election or a node coming back: each step is
	// retried until this deadline rather than failing on the first timeout.
	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := retrying(sctx, log, "creating streams", func(c context.Context) error {
		return bus.EnsureStreams(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas, DedupWindow: cfg.DedupWindow, UsagePartitions: cfg.UsagePartitions, QuotaLanes: cfg.QuotaLanes})
	}); err != nil {
		return nil, exitWith(4, err)
	}

	bgctx, bgcancel := context.WithCancel(context.Background())
	n.cancel = bgcancel
	follower := catalog.NewFollower(n.js, bus.ConfigStream, n.cat, log.With("component", "catalog"))
	n.goBackground(func() error { return follower.Run(bgctx) })
	if err := follower.Sync(sctx); err != nil {
		return nil, exitWith(4, err)
	}
	if cfg.ConfigFile != "" {
		f, err := catalog.LoadFile(cfg.ConfigFile)
		if err != nil {
			return nil, exitWith(2, err)
		}
		written, err := catalog.Bootstrap(sctx, n.js, n.cat, f, time.Now())
		if err != nil {
			return nil, exitWith(4, err)
		}
		log.Info("config applied", "file", cfg.ConfigFile, "changes", written, "keys", len(f.Keys))
	}

	if cfg.ClickHouseDSN != "" {
		if _, err := clickhouse.ParseDSN(cfg.ClickHouseDSN); err != nil {
			return nil, exitWith(2, fmt.Errorf("--clickhouse: %w", err))
		}
	}

	n.ingester = ingest.New(n.js, bus.UsageStream, n.cat, nil)

	// Rating: one worker per usage partition, each resuming from its snapshot.
	var snaps jetstream.ObjectStore
	err = retrying(sctx, log, "opening the snapshot store", func(c context.Context) (err error) {
		snaps, err = bus.EnsureSnapshotStore(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	var parts int
	err = retrying(sctx, log, "reading the usage partitions", func(c context.Context) (err error) {
		parts, err = bus.UsagePartitions(c, n.js)
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	err = retrying(sctx, log, "reading the quota lanes", func(c context.Context) (err error) {
		n.quotaLanes, err = bus.QuotaLanes(c, n.js)
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	rjs, err := n.stageJetStream(cfg, "allot-rating")
	if err != nil {
		return nil, exitWith(4, err)
	}
	var leases *bus.Leases
	err = retrying(sctx, log, "opening leases", func(c context.Context) (err error) {
		leases, err = bus.EnsureLeases(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas}, n.memberID())
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	// One worker per partition this process owns; the pool shares the partitions with every
	// other process running the rating role. Workers are kept per partition so their counters
	// only grow.
	for p := 0; p < parts; p++ {
		n.raters = append(n.raters, &rating.Worker{JS: rjs, UsageStream: bus.UsageStream, Snapshots: snaps, Source: ratingSource{n.cat}, ViewStream: bus.ConfigStream, Partition: p,
			SnapshotEvery: cfg.SnapshotEvery, Linger: cfg.RatingLinger, Log: log.With("component", "rating", "partition", p)})
	}
	if cfg.has(roleRating) && !cfg.NoRating {
		pool := &rating.Pool{Partitions: parts, Leases: leases, KV: leases.Bucket(), Member: n.memberID(), Log: log.With("component", "rating"),
			NewWorker: func(p int) *rating.Worker { return n.raters[p] }}
		n.goBackground(func() error { return pool.Run(bgctx) })
	}

	// Projections of the ledger, read by the API.
	err = retrying(sctx, log, "loading the ledger projection", func(c context.Context) (err error) {
		n.ledger, err = projector.LoadLedger(c, snaps)
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	log.Info("ledger projection loaded", "seq", n.ledger.Seq(), "customers", n.ledger.Customers())
	pjs, err := n.stageJetStream(cfg, "allot-projector")
	if err != nil {
		return nil, exitWith(4, err)
	}
	n.goBackground(func() error {
		return projector.Follow(bgctx, pjs, bus.LedgerStream, n.ledger, log.With("component", "projector"))
	})
	n.goBackground(func() error {
		return projector.SaveSnapshots(bgctx, snaps, n.ledger, cfg.ProjectionSnapshotEvery, log.With("component", "projector"))
	})
	// Answers `allot replay --verify`: the live projection's sequence and digest. Every
	// process answers (no queue group), so replay compares with each of them.
	host, _ := os.Hostname()
	process := fmt.Sprintf("%s pid %d, http %s", host, os.Getpid(), cfg.HTTPAddr)
	digestSub, err := n.nc.Subscribe(DigestSubject, func(m *nats.Msg) {
		seq, digest, err := n.ledger.Digest()
		if err != nil {
			return
		}
		b, _ := json.Marshal(digestReply{Process: process, Seq: seq, Digest: digest, Customers: n.ledger.Customers()})
		m.Respond(b)
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	_ = digestSub
	grace := cfg.ExpiryGrace
	if grace <= 0 {
		grace = projector.DefaultExpiryGrace
	}
	n.expirer = &projector.Expirer{JS: n.js, Ledger: n.ledger, Grace: grace, Log: log.With("component", "expirer")}
	if cfg.has(roleProjector) {
		n.goBackground(func() error { return n.expirer.Run(bgctx) })
	}
	var idem jetstream.KeyValue
	err = retrying(sctx, log, "opening the idempotency store", func(c context.Context) (err error) {
		idem, err = bus.EnsureIdempotencyStore(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	var notified jetstream.KeyValue
	err = retrying(sctx, log, "opening the notified-once store", func(c context.Context) (err error) {
		notified, err = bus.EnsureNotifiedStore(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	n.ingester.Customers = n.ledger

	// Webhooks: the notifier turns ledger entries into outbox notifications, the dispatcher
	// delivers them.
	var whState jetstream.KeyValue
	err = retrying(sctx, log, "opening the webhook state", func(c context.Context) (err error) {
		whState, err = bus.EnsureWebhookState(c, n.js, bus.StreamOptions{Replicas: cfg.Replicas})
		return err
	})
	if err != nil {
		return nil, exitWith(4, err)
	}
	wjs, err := n.stageJetStream(cfg, "allot-webhooks")
	if err != nil {
		return nil, exitWith(4, err)
	}
	n.notifier = &webhooks.Notifier{JS: wjs, KV: whState, Endpoints: n.cat, LedgerStream: bus.LedgerStream, Snapshots: snaps, Log: log.With("component", "notifier"),
		AnyEndpoints: func(ctx context.Context) (bool, error) {
			if err := follower.Sync(ctx); err != nil {
				return false, err
			}
			return n.cat.HasWebhookEndpoints(), nil
		}}
	if cfg.WebhookRetryScale <= 0 {
		cfg.WebhookRetryScale = 1
	}
	schedule := make([]time.Duration, len(webhooks.DefaultSchedule))
	for i, d := range webhooks.DefaultSchedule {
		schedule[i] = time.Duration(float64(d) * cfg.WebhookRetryScale)
	}
	n.dispatcher = &webhooks.Dispatcher{JS: wjs, KV: whState, Endpoints: catalog.Writer{JS: n.js, Cat: n.cat}, OutboxStream: bus.OutboxStream,
		Schedule: schedule, Timeout: cfg.WebhookTimeout, AllowPrivate: cfg.WebhooksAllowPrivate, Log: log.With("component", "webhooks")}
	if cfg.has(roleWebhooks) {
		// One notifier and one dispatcher in the whole deployment: they run under leases.
		n.goBackground(func() error { return leases.Holding(bgctx, "webhooks.notifier", log, n.notifier.Run) })
		n.goBackground(func() error { return leases.Holding(bgctx, "webhooks.dispatcher", log, n.dispatcher.Run) })
	}
	if cfg.ClickHouseDSN == "" && cfg.Roles != nil && cfg.Roles[roleSink] && len(cfg.Roles) < len(allRoles) {
		// Asked for by name, the sink without a ClickHouse would run nothing, silently.
		log.Warn("the sink role does nothing without --clickhouse")
	}
	if cfg.ClickHouseDSN != "" {
		// ClickHouse being down must not stop the rest: connect, migrate and sink in the
		// background, retrying; /readyz and /v1/usage say how it is going.
		n.ch, err = analytics.Open(sctx, cfg.ClickHouseDSN)
		if err != nil {
			log.Warn("clickhouse not reachable yet; analytics will retry", "err", err)
			opts, _ := clickhouse.ParseDSN(cfg.ClickHouseDSN)
			if n.ch, err = clickhouse.Open(opts); err != nil {
				return nil, exitWith(2, fmt.Errorf("--clickhouse: %w", err))
			}
		}
		sjs, err := n.stageJetStream(cfg, "allot-sink")
		if err != nil {
			return nil, exitWith(4, err)
		}
		n.sink = &analytics.Sink{JS: sjs, CH: n.ch, Meters: n.cat, UsageStream: bus.UsageStream, LedgerStream: bus.LedgerStream, Snapshots: snaps, Log: log.With("component", "sink")}
		n.goBackground(func() error {
			if !cfg.has(roleSink) {
				return nil
			}
			for bgctx.Err() == nil {
				if _, err := analytics.Migrate(bgctx, n.ch, log.With("component", "clickhouse")); err != nil {
					log.Warn("clickhouse migrations failed; retrying", "err", err)
					select {
					case <-time.After(2 * time.Second):
						continue
					case <-bgctx.Done():
						return nil
					}
				}
				break
			}
			// One sink in the whole deployment: two would insert the same rows. It confirms
			// the lease before each insert, so a sink that was paused past the lease's time
			// to live stops instead of racing the one that took over (bus.Hold.Confirm).
			return leases.HoldingConfirmed(bgctx, "clickhouse.sink", log, func(ctx context.Context, h *bus.Hold) error {
				return n.sink.RunConfirmed(ctx, h.Confirm)
			})
		})
	}
	n.registerMetrics()
	srv := api.New(api.Options{Ingest: cfg.has(roleIngest), API: cfg.has(roleAPI), Workers: !cfg.has(roleIngest) && !cfg.has(roleAPI), Catalog: n.cat, NC: n.nc, JS: n.js, Ingester: n.ingester, Ledger: n.ledger, Idempotency: idem, Notified: notified, WebhooksAllowPrivate: cfg.WebhooksAllowPrivate, Node: n.nodeName(cfg.DataDir), QuotaLanes: n.quotaLanes, KeyRequestsPerMinute: cfg.KeyRequestsPerMinute, Metrics: n.metrics,
		ClickHouse: n.ch, MaxBody: cfg.MaxBody, UsageQueryTimeout: cfg.UsageQueryTimeout, Log: log.With("component", "api")})
	n.httpLn, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return nil, exitWith(1, fmt.Errorf("listening on %s: %w", cfg.HTTPAddr, err))
	}
	// The API's requests are served by leanhttp's fast path, and any connection it does not
	// take by net/http (see internal/leanhttp for why and what each takes).
	fallback := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	n.httpSrv = &leanhttp.Server{Handler: srv.Handler(), Fallback: fallback, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second,
		Log: log.With("component", "http")}
	n.goBackground(func() error {
		if err := n.httpSrv.Serve(n.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving HTTP: %w", err)
		}
		return nil
	})
	return n, nil
}

// stageJetStream opens another connection for one stage of the pipeline. Every connection has
// one reader: sharing it, acknowledgements for ingest, debit writes and projection deliveries
// would queue behind each other.
func (n *node) stageJetStream(cfg nodeConfig, name string) (jetstream.JetStream, error) {
	var nc *nats.Conn
	var err error
	if n.embedded != nil {
		nc, err = nats.Connect("", nats.InProcessServer(n.embedded.Server), nats.Name(name), nats.MaxReconnects(-1))
	} else {
		nc, err = nats.Connect(cfg.NATSURL, nats.Name(name), nats.MaxReconnects(-1), nats.Timeout(5*time.Second))
	}
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", name, err)
	}
	n.extra = append(n.extra, nc)
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(8192))
}

func (n *node) goBackground(f func() error) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := f(); err != nil {
			n.bgErr <- err
		}
	}()
}

// httpURL is the base URL the API answers on.
func (n *node) httpURL() string { return "http://" + n.httpLn.Addr().String() }

func (n *node) registerMetrics() {
	c := &n.ingester.Counter
	for _, r := range []struct {
		result string
		v      func() int64
	}{{"accepted", c.Accepted.Load}, {"duplicate", c.Duplicates.Load}, {"rejected", c.Rejected.Load}} {
		v := r.v
		n.metrics.CounterFunc("allot_ingest_events_total", "Usage events received over HTTP, by result.", func() float64 { return float64(v()) }, "result", r.result)
	}
	n.metrics.CounterFunc("allot_ingest_conflicting_duplicates_total", "Event ids reused with a different payload.", func() float64 { return float64(c.Conflicts.Load()) })
	n.metrics.GaugeFunc("allot_nats_connected", "1 while the NATS connection is up.", func() float64 {
		if n.nc.IsConnected() {
			return 1
		}
		return 0
	})
	n.metrics.GaugeFunc("allot_config_sequence", "Last config stream sequence applied.", func() float64 { return float64(n.cat.Seq()) })
	n.metrics.GaugeFunc("allot_ledger_sequence", "Last ledger stream sequence the projections applied.", func() float64 { return float64(n.ledger.Seq()) })
	sum := func(f func(*rating.Counters) int64) func() float64 {
		return func() float64 {
			var t int64
			for _, w := range n.raters {
				t += f(&w.Counters)
			}
			return float64(t)
		}
	}
	n.metrics.CounterFunc("allot_rating_events_total", "Usage events rated (metered or not).", sum(func(c *rating.Counters) int64 { return c.Events.Load() }))
	n.metrics.CounterFunc("allot_rating_batches_total", "Fetched batches rated; events/batches is the batching achieved.", sum(func(c *rating.Counters) int64 { return c.Batches.Load() }))
	n.metrics.CounterFunc("allot_rating_debits_total", "Debit entries written (credit-backs included).", sum(func(c *rating.Counters) int64 { return c.Debits.Load() }))
	n.metrics.CounterFunc("allot_rating_credit_backs_total", "Credit-back entries written (volume pricing lowering a total).", sum(func(c *rating.Counters) int64 { return c.CreditBacks.Load() }))
	n.metrics.CounterFunc("allot_rating_unrated_events_total", "Metered events no rule priced (written to the ledger as usage.unrated.v1).", sum(func(c *rating.Counters) int64 { return c.Unrated.Load() }))
	n.metrics.CounterFunc("allot_rating_unmetered_events_total", "Events no meter counts.", sum(func(c *rating.Counters) int64 { return c.Unmetered.Load() }))
	n.metrics.CounterFunc("allot_rating_future_dated_events_total", "Usage messages published straight to JetStream dated more than 5 minutes after the stream received them; rated at the stream's time.", sum(func(c *rating.Counters) int64 { return c.FutureDated.Load() }))
	n.metrics.CounterFunc("allot_rating_malformed_events_total", "Usage messages that could not be read (published straight to JetStream).", sum(func(c *rating.Counters) int64 { return c.Malformed.Load() }))
	if n.sink != nil {
		for _, part := range []struct {
			name string
			st   *analytics.Stats
			str  string
		}{{"usage", &n.sink.Usage, bus.UsageStream}, {"ledger", &n.sink.Ledger, bus.LedgerStream}} {
			st := part.st
			n.metrics.CounterFunc("allot_sink_rows_total", "Rows inserted into ClickHouse.", func() float64 { return float64(st.Rows.Load()) }, "stream", part.name)
			n.metrics.CounterFunc("allot_sink_batches_total", "INSERTs into ClickHouse.", func() float64 { return float64(st.Batches.Load()) }, "stream", part.name)
			n.metrics.CounterFunc("allot_sink_errors_total", "Sink restarts after a ClickHouse or NATS error.", func() float64 { return float64(st.Errors.Load()) }, "stream", part.name)
			n.metrics.CounterFunc("allot_sink_unstorable_total", "Rows or values left out because ClickHouse's columns cannot hold them (a time outside 1970-2105, a quantity of 10^29 or more).", func() float64 { return float64(st.Unstorable.Load()) }, "stream", part.name)
			n.metrics.GaugeFunc("allot_sink_sequence", "Last stream sequence held by ClickHouse.", func() float64 { return float64(st.Seq.Load()) }, "stream", part.name)
			n.metrics.GaugeFunc("allot_sink_lag_seconds", "How far ClickHouse is behind: since the oldest message not yet inserted (it grows through an outage), else what the last batch took.", func() float64 { return st.Lag(time.Now()).Seconds() }, "stream", part.name)
			n.metrics.GaugeFunc("allot_sink_rows_per_batch", "Average rows per INSERT so far.", func() float64 {
				if b := st.Batches.Load(); b > 0 {
					return float64(st.Rows.Load()) / float64(b)
				}
				return 0
			}, "stream", part.name)
		}
	}
	for _, w := range n.raters {
		w := w
		n.metrics.GaugeFunc("allot_rating_sequence", "Last usage stream sequence rated, per partition.", func() float64 { return float64(w.Counters.Seq.Load()) }, "partition", strconv.Itoa(w.Partition))
	}
}

// close shuts down in order: stop taking requests, stop background work, drain the NATS
// connection so in-flight publishes finish, then stop the embedded server and wait for it.
func (n *node) close(ctx context.Context) error {
	var errs []error
	if n.httpSrv != nil {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := n.httpSrv.Shutdown(sctx); err != nil {
			errs = append(errs, fmt.Errorf("stopping HTTP: %w", err))
		}
		cancel()
	}
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	for _, nc := range n.extra {
		drain(nc)
	}
	if n.nc != nil {
		drain(n.nc)
	}
	if n.ch != nil {
		n.ch.Close()
	}
	if n.embedded != nil {
		n.embedded.Shutdown()
	}
	return errors.Join(errs...)
}

// drain lets a connection finish what it has in flight, then closes it.
func drain(nc *nats.Conn) {
	{
		closed := make(chan struct{})
		nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := nc.Drain(); err != nil {
			nc.Close()
		} else {
			select {
			case <-closed:
			case <-time.After(10 * time.Second):
				nc.Close()
			}
		}
	}
}

func parseListen(s string) (host string, port int, err error) {
	if s == "off" {
		return "", -2, nil
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "", 0, fmt.Errorf("--nats-listen %q: want host:port or off", s)
	}
	port, err = strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("--nats-listen %q: bad port", s)
	}
	if port == 0 {
		port = -1 // any free port
	}
	return h, port, nil
}

// DigestSubject is where live processes answer with their projection digest.
const DigestSubject = "allot.admin.digest"

type digestReply struct {
	Process   string `json:"process"` // which process answered: host, pid and HTTP address
	Seq       uint64 `json:"seq"`
	Digest    string `json:"digest"`
	Customers int    `json:"customers"`
}

// Roles a process can run (allot serve --roles).
const (
	roleIngest    = "ingest"    // POST /v1/events
	roleAPI       = "api"       // every other endpoint (and the ledger projection it reads)
	roleRating    = "rating"    // rating workers, sharing the usage partitions
	roleProjector = "projector" // the expirer and postpaid renewals
	roleSink      = "sink"      // the ClickHouse sink (one at a time, by lease)
	roleWebhooks  = "webhooks"  // notifier and dispatcher (one at a time, by lease)
)

var allRoles = []string{roleIngest, roleAPI, roleRating, roleProjector, roleSink, roleWebhooks}

func (c nodeConfig) has(role string) bool { return c.Roles == nil || c.Roles[role] }

// parseRoles reads --roles.
func parseRoles(s string) (map[string]bool, error) {
	if s == "" || s == "all" {
		return nil, nil
	}
	out := map[string]bool{}
	for _, r := range strings.Split(s, ",") {
		r = strings.TrimSpace(r)
		if !slices.Contains(allRoles, r) {
			return nil, fmt.Errorf("--roles: %q is not one of %s", r, strings.Join(allRoles, ", "))
		}
		out[r] = true
	}
	return out, nil
}

// memberID names this process in leases: host and pid, unique among live processes.
func (n *node) memberID() string {
	if n.member == "" {
		host, _ := os.Hostname()
		n.member = fmt.Sprintf("%s-%d-%d", strings.NewReplacer(".", "-", " ", "-").Replace(host), os.Getpid(), time.Now().UnixNano()%1_000_000)
	}
	return n.member
}

// retrying runs step with a 10 s budget per try until it succeeds or ctx ends; a refusal to
// change the streams' fixed layout (partitions, quota lanes) is final.
func retrying(ctx context.Context, log *slog.Logger, what string, step func(context.Context) error) error {
	backoff := 200 * time.Millisecond
	for {
		c, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := step(c)
		cancel()
		if err == nil || ctx.Err() != nil || errors.Is(err, bus.ErrPartitionsFixed) || errors.Is(err, bus.ErrQuotaLanesFixed) {
			if err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
			return nil
		}
		log.Warn("retrying", "step", what, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// nodeName names this process across restarts: its host and data directory — with embedded
// NATS, where the data directory is locked, so no other process has the name. With an external
// NATS nothing makes the name unique, and "" leaves in-flight keys to their timeout.
func (n *node) nodeName(dataDir string) string {
	if n.embedded == nil {
		return ""
	}
	host, _ := os.Hostname()
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	return host + ":" + dataDir
}

// ratingSource is the catalog as rating reads it (rating.ConfigSource): views of the meters,
// rule versions and quotas by config sequence.
type ratingSource struct{ *catalog.Catalog }

func (s ratingSource) RatingView(seq uint64) (rating.Config, error) {
	v, err := s.Catalog.RatingView(seq)
	if err != nil {
		return nil, err // not a nil *Catalog in a non-nil interface
	}
	return v, nil
}
