package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/ingest"
	"github.com/allot-dev/allot/metrics"
	"github.com/allot-dev/allot/projector"
)

// Options wire a Server.
type Options struct {
	// Ingest and API choose the endpoints served (allot serve --roles): POST /v1/events, and
	// everything else under /v1. Both false means both; use Workers for a process that serves
	// only /healthz, /readyz and /metrics.
	Ingest, API, Workers bool
	Catalog              *catalog.Catalog
	NC                   *nats.Conn
	JS                   jetstream.JetStream
	Ingester             *ingest.Ingester
	Ledger               *projector.Ledger
	// Idempotency stores Idempotency-Key records; nil disables the header.
	Idempotency jetstream.KeyValue
	// Notified remembers quota.exceeded notifications until their window ends (bus.NotifiedBucket),
	// so each goes out once per window; nil leaves it to the outbox's duplicate window.
	Notified jetstream.KeyValue
	// WebhooksAllowPrivate lets webhook endpoints be on addresses that are not public
	// (webhooks.PublicAddress); off, registering one is a 422 naming url.
	WebhooksAllowPrivate bool
	// Node names this process across restarts, uniquely (allot serve with embedded NATS: host
	// and locked data directory), so a restarted process takes over the Idempotency-Keys its
	// previous run left in flight; "" waits for their timeout instead.
	Node string
	// QuotaLanes is the number of quota lanes per product and env: the ledger stream's
	// (bus.QuotaLanes); 0 means 1.
	QuotaLanes int
	// KeyRequestsPerMinute caps each API key's requests per minute in this process (0: none).
	KeyRequestsPerMinute int64
	Metrics              *metrics.Registry
	ClickHouse           driver.Conn // nil when analytics is not configured: /v1/usage answers 503
	MaxBody              int64       // bytes; default 5 MiB
	// UsageQueryTimeout bounds one /v1/usage query in ClickHouse; default 30 s.
	UsageQueryTimeout time.Duration
	Log               *slog.Logger
	Now               func() time.Time
}

// Server serves the HTTP API.
type Server struct {
	o       Options
	mux     *http.ServeMux
	limiter *keyLimiter
	incs    *projector.QuotaCommands // quota commands, on quota lanes, increments committed in batches
	resvs   *projector.Reservations  // holds without an Idempotency-Key, likewise

	streamMu sync.Mutex
	ledger   jetstream.Stream // cached handle: looking a stream up is a round trip

	incarnation string // random, per New: tells this run's in-flight keys from a previous run's

	ledgerPages  *ledgerCheckpoints // where ledger pages ended, so the next one folds on from there
	ledgerFolded atomic.Int64       // entries the ledger API folded
}

// ledgerStream returns the ledger stream's handle, looked up once.
func (s *Server) ledgerStream(ctx context.Context) (jetstream.Stream, error) {
	s.streamMu.Lock()
	defer s.streamMu.Unlock()
	if s.ledger != nil {
		return s.ledger, nil
	}
	st, err := s.o.JS.Stream(ctx, bus.LedgerStream)
	if err != nil {
		return nil, err
	}
	s.ledger = st
	return st, nil
}

// DefaultMaxBody bounds a request body.
const DefaultMaxBody = 5 << 20

// New builds the server and its routes.
func New(o Options) *Server {
	if o.UsageQueryTimeout <= 0 {
		o.UsageQueryTimeout = 30 * time.Second
	}
	if o.MaxBody <= 0 {
		o.MaxBody = DefaultMaxBody
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.New()
	}
	var inc [8]byte
	rand.Read(inc[:])
	s := &Server{o: o, mux: http.NewServeMux(), limiter: newKeyLimiter(o.KeyRequestsPerMinute), incarnation: hex.EncodeToString(inc[:])}
	s.incs = projector.NewQuotaCommands(o.JS, s.ledgerStream, o.Ledger)
	s.incs.Lanes = max(o.QuotaLanes, 1)
	s.resvs = projector.NewReservations(o.JS, s.ledgerStream, o.Ledger)
	s.ledgerPages = newLedgerCheckpoints(4096, 64<<20)
	o.Metrics.CounterFunc("allot_ledger_api_entries_read_total", "Ledger entries the ledger API read and folded to answer pages (from a page's checkpoint, else from the customer's first entry).",
		func() float64 { return float64(s.ledgerFolded.Load()) })
	o.Metrics.CounterFunc("allot_quota_increments_total", "Quota commands decided (increments, resets, adjustments), written on quota lanes.",
		func() float64 { return float64(s.incs.Requests.Load()) })
	o.Metrics.CounterFunc("allot_quota_increment_entries_total", "Quota lane entries written; increments_total / increment_entries_total is the batching achieved.",
		func() float64 { return float64(s.incs.Entries.Load()) })
	o.Metrics.CounterFunc("allot_reservations_total", "Reservations decided without an Idempotency-Key (group committed).",
		func() float64 { return float64(s.resvs.Requests.Load()) })
	o.Metrics.CounterFunc("allot_reservation_entries_total", "Ledger entries that wrote group-committed reservations.",
		func() float64 { return float64(s.resvs.Entries.Load()) })
	s.routes()
	return s
}

type route struct {
	pattern string
	methods map[string]http.HandlerFunc
}

// Routes lists every path pattern served with its methods (the OpenAPI test checks the
// document against it).
func (s *Server) Routes() map[string][]string {
	out := map[string][]string{}
	for _, r := range s.table() {
		for m := range r.methods {
			out[r.pattern] = append(out[r.pattern], m)
		}
	}
	return out
}

func (s *Server) routes() {
	both := !s.o.Ingest && !s.o.API && !s.o.Workers
	for _, r := range s.table() {
		ingest := r.pattern == "/v1/events"
		public := !strings.HasPrefix(r.pattern, "/v1/")
		if !both && !public && ((ingest && !s.o.Ingest) || (!ingest && !s.o.API)) {
			continue
		}
		s.mux.Handle(r.pattern, s.instrument(r.pattern, methodSwitch(r.methods)))
	}
	s.mux.Handle("/", s.instrument("other", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such endpoint: "+r.URL.Path))
	})))
}

func (s *Server) table() []route {
	return []route{
		{"/healthz", map[string]http.HandlerFunc{"GET": s.healthz}},
		{"/readyz", map[string]http.HandlerFunc{"GET": s.readyz}},
		{"/metrics", map[string]http.HandlerFunc{"GET": s.metrics}},
		{"/v1/events", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postEvents))}},
		{"/v1/meters", map[string]http.HandlerFunc{"GET": s.authed(s.listMeters)}},
		{"/v1/meters/{key}", map[string]http.HandlerFunc{"GET": s.authed(s.getMeter), "PUT": s.admin(s.putMeter)}},
		{"/v1/rules", map[string]http.HandlerFunc{"GET": s.authed(s.listRules)}},
		{"/v1/rules/{key}", map[string]http.HandlerFunc{"GET": s.authed(s.getRule), "PUT": s.admin(s.putRule)}},
		{"/v1/customers/{id}/balance", map[string]http.HandlerFunc{"GET": s.authed(s.getBalance)}},
		{"/v1/customers/{id}/grants", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postGrant))}},
		{"/v1/reservations", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postReservation))}},
		{"/v1/reservations/{id}", map[string]http.HandlerFunc{"GET": s.authed(s.getReservation)}},
		{"/v1/reservations/{id}/commit", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postCommit))}},
		{"/v1/reservations/{id}/release", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postRelease))}},
		{"/v1/entitlements/check", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postEntitlementCheck))}},
		{"/v1/features/{key}", map[string]http.HandlerFunc{"GET": s.authed(s.getFeature), "PUT": s.admin(s.putFeature)}},
		{"/v1/quotas/{key}", map[string]http.HandlerFunc{"GET": s.authed(s.getQuota), "PUT": s.admin(s.putQuota)}},
		{"/v1/quotas/{key}/check", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postQuotaCheck))}},
		{"/v1/quotas/{key}/increment", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postQuotaIncrement))}},
		{"/v1/quotas/{key}/reset", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postQuotaReset))}},
		{"/v1/quotas/{key}/adjust", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postQuotaAdjust))}},
		{"/v1/customers/{id}/quotas", map[string]http.HandlerFunc{"GET": s.authed(s.getCustomerQuotas)}},
		{"/v1/customers/{id}/quotas/increment", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postCustomerQuotasIncrement))}},
		{"/v1/usage", map[string]http.HandlerFunc{"GET": s.authed(s.getUsage)}},
		{"/v1/plans/{key}", map[string]http.HandlerFunc{"GET": s.authed(s.getPlan), "PUT": s.admin(s.putPlan)}},
		{"/v1/subscriptions", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postSubscription))}},
		{"/v1/subscriptions/{id}", map[string]http.HandlerFunc{"GET": s.authed(s.getSubscription)}},
		{"/v1/subscriptions/{id}/renew", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postRenew))}},
		{"/v1/subscriptions/{id}/cancel", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postCancel))}},
		{"/v1/customers/{id}/topups", map[string]http.HandlerFunc{"POST": s.authed(s.idempotent(s.postTopup))}},
		{"/v1/webhook-endpoints", map[string]http.HandlerFunc{"POST": s.admin(s.idempotent(s.postWebhookEndpoint))}},
		{"/v1/webhook-endpoints/{id}", map[string]http.HandlerFunc{"GET": s.admin(s.getWebhookEndpoint)}},
		{"/v1/webhook-endpoints/{id}/rotate", map[string]http.HandlerFunc{"POST": s.admin(s.idempotent(s.postRotate))}},
		{"/v1/webhook-endpoints/{id}/deliveries", map[string]http.HandlerFunc{"GET": s.admin(s.getDeliveries)}},
		{"/v1/customers/{id}/ledger", map[string]http.HandlerFunc{"GET": s.authed(s.getLedger)}},
	}
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.mux }

// methodSwitch answers 405 as problem+json (net/http's own 405 is plain text).
func methodSwitch(m map[string]http.HandlerFunc) http.Handler {
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := m[r.Method]
		if !ok && r.Method == http.MethodHead {
			h, ok = m[http.MethodGet]
		}
		if !ok {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			problem.Write(w, problem.New(problem.MethodNotAllowed, http.StatusMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path))
			return
		}
		h(w, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) instrument(pattern string, h http.Handler) http.Handler {
	hist := s.o.Metrics.Histogram("allot_http_request_duration_seconds", "HTTP request latency by route.", "route", pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		h.ServeHTTP(rec, r)
		hist.Observe(time.Since(start))
	})
}

type keyCtx struct{}

// authed requires a valid API key and puts its grant in the request context.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := presentedKey(r)
		if key == "" {
			w.Header().Set("WWW-Authenticate", `Bearer realm="allot"`)
			problem.Write(w, problem.New(problem.Unauthenticated, http.StatusUnauthorized, "send an API key as Authorization: Bearer <key> or X-API-Key: <key>"))
			return
		}
		k, ok := s.o.Catalog.Authenticate(key)
		if !ok {
			w.Header().Set("WWW-Authenticate", `Bearer realm="allot", error="invalid_token"`)
			problem.Write(w, problem.New(problem.Unauthenticated, http.StatusUnauthorized, "the API key is not valid"))
			return
		}
		if !s.limitKey(w, key) {
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), keyCtx{}, k)))
	}
}

// admin requires an admin key.
func (s *Server) admin(h http.HandlerFunc) http.HandlerFunc {
	return s.authed(func(w http.ResponseWriter, r *http.Request) {
		if !keyFrom(r).Admin {
			problem.Write(w, problem.New(problem.Forbidden, http.StatusForbidden, "this needs an admin key: configuration changes and webhook endpoints are for admin keys"))
			return
		}
		h(w, r)
	})
}

func keyFrom(r *http.Request) catalog.Key {
	k, _ := r.Context().Value(keyCtx{}).(catalog.Key)
	return k
}

func scopeFrom(r *http.Request) events.Scope { return keyFrom(r).Scope }

// presentedKey is the API key of a request: a Bearer credential (the scheme in any case, as
// HTTP's schemes are), else X-API-Key — also behind a proxy that sets Authorization to a
// scheme of its own.
func presentedKey(r *http.Request) string {
	if scheme, cred, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		return strings.TrimSpace(cred)
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// readBody reads a bounded body; the problem says 413 or 400, or 415 for a Content-Type that
// is not JSON (a body sent as text/plain or a form was read as JSON all the same). A request
// without one is read as JSON.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *problem.Problem) {
	if ct := r.Header.Get("Content-Type"); ct != "" && ct != "application/json" { // the common case, without parsing (which allocates)
		if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return nil, problem.New(problem.UnsupportedMediaType, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted here; send application/json", ct))
		}
	}
	if n := r.ContentLength; n >= 0 && n <= s.o.MaxBody {
		// The length is known and allowed, and net/http's body gives exactly that many bytes:
		// read them into a slice of that size. io.ReadAll starts at 512 bytes and grows, more
		// than a check's whole body, on every request.
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "reading the body: "+err.Error())
		}
		return body, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, problem.New(problem.BodyTooLarge, http.StatusRequestEntityTooLarge, "the request body is larger than the limit of "+itoa(s.o.MaxBody)+" bytes; split the batch")
		}
		return nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "reading the body: "+err.Error())
	}
	return body, nil
}

// jsonContentType is shared by every JSON answer: net/http copies header values when it
// writes them and never changes them, so one slice saves an allocation per request.
var jsonContentType = []string{"application/json"}

// answerBufs holds the buffers hand-written answers are appended to: ResponseWriter.Write
// copies what it is given, so a buffer is free again once written.
var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

func writeJSON(w http.ResponseWriter, status int, v any) {
	if a, ok := v.(interface{ AppendJSON([]byte) ([]byte, error) }); ok { // every check and increment
		buf := answerBufs.Get().(*[]byte)
		b, err := a.AppendJSON((*buf)[:0])
		if err == nil {
			writeJSONBytes(w, status, append(b, '\n'))
		}
		if cap(b) <= 64<<10 {
			*buf = b[:0]
			answerBufs.Put(buf)
		}
		if err == nil {
			return
		}
	} else if b, err := json.Marshal(v); err == nil {
		writeJSONBytes(w, status, append(b, '\n'))
		return
	}
	problem.Write(w, problem.New(problem.Internal, http.StatusInternalServerError, "encoding the response failed"))
}

func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(b)
}

func itoa(n int64) string {
	b, _ := json.Marshal(n)
	return string(b)
}
