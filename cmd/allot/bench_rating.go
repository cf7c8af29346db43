package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/rating"
)

const benchConfig = `keys:
  - {key: ak_bench_0123456789abcdef, product: bench, env: bench, admin: true}
meters:
  tokens: {event_type: api.call, aggregation: sum, value_property: tokens}
rules:
  tokens:
    meter: tokens
    model: graduated
    effective_from: 2020-01-01T00:00:00Z
    tiers: [{up_to: 10000, unit_price: 0.001}, {up_to: 100000, unit_price: 0.0005}, {unit_price: 0.0001}]
`

// benchNode starts a node in a temporary folder with the bench configuration.
func benchNode(ctx context.Context, noRating bool) (*node, func(), error) {
	return benchNodeCH(ctx, noRating, "")
}

func benchNodeCH(ctx context.Context, noRating bool, clickhouseDSN string) (*node, func(), error) {
	return benchNodeOn(ctx, noRating, clickhouseDSN, "", 1)
}

// benchNodeOn starts a bench node; with natsURL, against that (cluster) instead of embedded.
func benchNodeOn(ctx context.Context, noRating bool, clickhouseDSN, natsURL string, replicas int) (*node, func(), error) {
	dir, err := os.MkdirTemp("", "allot-bench-")
	if err != nil {
		return nil, nil, err
	}
	cfgPath := dir + "/allot.yaml"
	if err := os.WriteFile(cfgPath, []byte(benchConfig), 0o600); err != nil {
		return nil, nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	n, err := startNode(ctx, nodeConfig{DataDir: dir + "/data", NATSListen: "off", HTTPAddr: "127.0.0.1:0", DedupWindow: time.Hour,
		UsagePartitions: 8, Replicas: replicas, WebhooksAllowPrivate: true, MaxBody: 64 << 20, ConfigFile: cfgPath, NoRating: noRating, ClickHouseDSN: clickhouseDSN, NATSURL: natsURL, Log: log})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return n, func() { n.close(context.Background()); os.RemoveAll(dir) }, nil
}

// benchRating measures rated events/s (usage consumed, priced, debits written and
// acknowledged) against a raw pull consumer's fetch+ack rate over the same stream.
func benchRating(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	var raws, rated []float64
	for round := 0; round < o.rounds; round++ {
		n, done, err := benchNode(ctx, true)
		if err != nil {
			return nil, err
		}
		scope := events.Scope{Product: "bench", Env: "bench"}
		if _, err := benchRawPublish(ctx, n, scope, benchEvents(fmt.Sprintf("g%d", round), o.events)); err != nil {
			done()
			return nil, err
		}
		raw, err := benchRawConsume(ctx, n.js, o.events)
		if err != nil {
			done()
			return nil, err
		}
		rate, err := benchRatingWorkers(ctx, n, o.events)
		done()
		if err != nil {
			return nil, err
		}
		raws, rated = append(raws, raw), append(rated, rate)
		fmt.Fprintf(progress, "bench rating: round %d/%d raw consume+ack %.0f events/s, rating %.0f events/s\n", round+1, o.rounds, raw, rate)
	}
	return []benchResult{{Name: "rating", Value: median(rated), Unit: "events/s", BaselineName: "jetstream_consume_ack", BaselineValue: median(raws), Ratio: median(rated) / median(raws)}}, nil
}

// benchRawConsume drains the usage stream with one durable pull consumer, acking each batch.
func benchRawConsume(ctx context.Context, js jetstream.JetStream, total int) (float64, error) {
	cons, err := js.CreateConsumer(ctx, bus.UsageStream, jetstream.ConsumerConfig{Durable: "bench-raw", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 8000})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	got := 0
	for got < total {
		msgs, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, err
		}
		var last jetstream.Msg
		for m := range msgs.Messages() {
			last = m
			got++
		}
		if last == nil {
			return 0, fmt.Errorf("raw consume stalled at %d of %d", got, total)
		}
		if err := last.Ack(); err != nil {
			return 0, err
		}
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

// benchRatingWorkers runs the partition workers a node runs until they have rated everything.
func benchRatingWorkers(ctx context.Context, n *node, total int) (float64, error) {
	snaps, err := bus.EnsureSnapshotStore(ctx, n.js, bus.StreamOptions{})
	if err != nil {
		return 0, err
	}
	s, err := n.js.Stream(ctx, bus.UsageStream)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, err
	}
	last := info.State.LastSeq
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var workers []*rating.Worker
	var wg sync.WaitGroup
	start := time.Now()
	for p := 0; p < 8; p++ {
		w := &rating.Worker{JS: n.js, UsageStream: bus.UsageStream, Snapshots: snaps, Source: ratingSource{n.cat}, ViewStream: bus.ConfigStream, Partition: p, SnapshotEvery: time.Second, Log: slog.New(slog.DiscardHandler)}
		workers = append(workers, w)
		wg.Add(1)
		go func() { defer wg.Done(); w.Run(wctx) }()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var rated int64
		for _, w := range workers {
			rated += w.Counters.Events.Load()
		}
		if rated >= int64(total) {
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("rating stalled at %d of %d (last usage seq %d)", rated, total, last)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	return float64(total) / elapsed.Seconds(), nil
}

// benchPipeline measures the whole embedded pipeline — HTTP ingest, rating, ledger, the
// balance projection, and with ClickHouse configured (ALLOT_CLICKHOUSE) the rows in
// ClickHouse — against raw JetStream publish and consume of the same payloads running at the
// same time.
func benchPipeline(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	var raws, pipes []float64
	client := benchClient(o)
	withCH := benchClickHouseDSN() != ""
	for round := 0; round < o.rounds; round++ {
		n, done, err := benchNode(ctx, true)
		if err != nil {
			return nil, err
		}
		cpu0 := processCPU()
		raw, err := benchRawPubSub(ctx, n, benchEvents(fmt.Sprintf("p%d", round), o.events))
		rawCPU := processCPU() - cpu0
		done()
		if err != nil {
			return nil, err
		}
		dsn, dropCH := "", func() {}
		if withCH {
			if dsn, _, dropCH, err = benchClickHouse(ctx); err != nil {
				return nil, err
			}
		}
		n, done, err = benchNodeCH(ctx, false, dsn)
		if err != nil {
			dropCH()
			return nil, err
		}
		stopNode := done
		done = func() { stopNode(); dropCH() }
		if err := benchWebhooks(o, n.httpURL()); err != nil {
			done()
			return nil, err
		}
		bodies := benchBodies(benchEvents(fmt.Sprintf("q%d", round), o.events), o)
		cpu0 = processCPU()
		pipe, err := benchFullPipeline(ctx, n, client, bodies, o, progress)
		pipeCPU := processCPU() - cpu0
		done()
		if err != nil {
			return nil, err
		}
		raws, pipes = append(raws, raw), append(pipes, pipe)
		fmt.Fprintf(progress, "bench pipeline: round %d/%d raw publish+consume %.0f events/s (CPU %.1f µs/event), pipeline %.0f events/s (CPU %.1f µs/event)\n",
			round+1, o.rounds, raw, perEvent(rawCPU, o.events), pipe, perEvent(pipeCPU, o.events))
	}
	name := "pipeline"
	if withCH {
		name = "pipeline_with_clickhouse"
	}
	return []benchResult{{Name: name, Value: median(pipes), Unit: "events/s", BaselineName: "jetstream_publish_consume", BaselineValue: median(raws), Ratio: median(pipes) / median(raws)}}, nil
}

func benchRawPubSub(ctx context.Context, n *node, evs []events.Usage) (float64, error) {
	scope := events.Scope{Product: "bench", Env: "bench"}
	cons, err := n.js.CreateConsumer(ctx, bus.UsageStream, jetstream.ConsumerConfig{Durable: "bench-raw", AckPolicy: jetstream.AckAllPolicy, MaxAckPending: 8000})
	if err != nil {
		return 0, err
	}
	start := time.Now()
	errc := make(chan error, 1)
	go func() {
		_, err := benchRawPublish(ctx, n, scope, evs)
		errc <- err
	}()
	got := 0
	for got < len(evs) {
		msgs, err := cons.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return 0, err
		}
		var last jetstream.Msg
		for m := range msgs.Messages() {
			last = m
			got++
		}
		if last != nil {
			if err := last.Ack(); err != nil {
				return 0, err
			}
		}
	}
	if err := <-errc; err != nil {
		return 0, err
	}
	return float64(len(evs)) / time.Since(start).Seconds(), nil
}

func benchFullPipeline(ctx context.Context, n *node, client *benchHTTP, bodies [][]byte, o benchOptions, progress io.Writer) (float64, error) {
	start := time.Now()
	if _, err := client.send(ctx, n.httpURL(), bodies, o.events, o); err != nil {
		return 0, err
	}
	ingested := time.Since(start)
	// Done when the balance projection has folded one debit per event, and with ClickHouse
	// when the sink has written a row per event.
	deadline := time.Now().Add(5 * time.Minute)
	for n.ledger.Items() < int64(o.events) || (n.sink != nil && n.sink.Usage.Rows.Load() < int64(o.events)) {
		if time.Now().After(deadline) {
			rows := int64(-1)
			if n.sink != nil {
				rows = n.sink.Usage.Rows.Load()
			}
			return 0, fmt.Errorf("pipeline stalled: the projection applied %d of %d debits, the sink wrote %d rows", n.ledger.Items(), o.events, rows)
		}
		time.Sleep(2 * time.Millisecond)
	}
	rate := float64(o.events) / time.Since(start).Seconds()
	var ev, batches int64
	for _, w := range n.raters {
		ev, batches = ev+w.Counters.Events.Load(), batches+w.Counters.Batches.Load()
	}
	if batches > 0 {
		fmt.Fprintf(progress, "bench pipeline: HTTP ingest done after %s of %s; rating took %d events in %d batches (%.1f per batch)\n",
			ingested.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), ev, batches, float64(ev)/float64(batches))
	}
	return rate, nil
}

// processCPU is the CPU time (user and system) this process has used so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func perEvent(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }
