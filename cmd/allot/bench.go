package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// benchResult is one figure next to the raw baseline it is measured against, in the same run.
type benchResult struct {
	Name          string  `json:"name"`
	Value         float64 `json:"value"`
	Unit          string  `json:"unit"`
	BaselineName  string  `json:"baseline_name"`
	BaselineValue float64 `json:"baseline_value"`
	Ratio         float64 `json:"ratio"`
}

type benchOptions struct {
	events, batch, concurrency, rounds, customers int
	natsURL                                       string
	webhooks                                      bool
}

// benchWebhooks registers a webhook endpoint when --webhooks is given, so the notifier folds
// the ledger as in a deployment that uses webhooks (without any endpoint it stays idle). Nothing
// listens at its URL and the bench writes nothing that would be sent to it.
func benchWebhooks(o benchOptions, base string) error {
	if !o.webhooks {
		return nil
	}
	return httpDo(http.DefaultClient, "POST", base+"/v1/webhook-endpoints", `{"url":"http://127.0.0.1:9/allot-bench","events":["*"]}`, 201)
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	which := "all"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		which, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print a JSON list of {name, value, unit, baseline_name, baseline_value, ratio}")
	var o benchOptions
	fs.IntVar(&o.events, "events", 100000, "events per measurement")
	fs.IntVar(&o.batch, "batch", 500, "events per HTTP request")
	fs.IntVar(&o.concurrency, "concurrency", 4, "concurrent HTTP clients")
	fs.IntVar(&o.customers, "customers", 1000000, "customers in the memory figure")
	fs.StringVar(&o.natsURL, "nats-url", "", "also run the ingest figure against this NATS cluster (R3 streams; it creates allot's streams there: use a test cluster)")
	fs.BoolVar(&o.webhooks, "webhooks", false, "pipeline, quota: register a webhook endpoint, so the notifier folds the ledger too")
	fs.IntVar(&o.rounds, "rounds", 3, "alternating rounds of baseline and figure; the median is reported")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memProfile := fs.String("memprofile", "", "write a profile of what the whole run allocated to this file")
	if err := bindEnv(fs, args); err != nil {
		return err
	}
	if *memProfile != "" {
		runtime.MemProfileRate = 64 << 10
		defer func() {
			f, err := os.Create(*memProfile)
			if err != nil {
				fmt.Fprintln(stderr, "bench:", err)
				return
			}
			defer f.Close()
			if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
				fmt.Fprintln(stderr, "bench:", err)
			}
		}()
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if o.events <= 0 || o.batch <= 0 || o.concurrency <= 0 || o.rounds <= 0 {
		return exitWith(2, fmt.Errorf("--events, --batch, --concurrency and --rounds must be positive"))
	}
	var results []benchResult
	switch which {
	case "rating", "pipeline", "check", "reserve", "replay", "memory", "quota", "sink":
	case "ingest", "all":
		r, err := benchIngest(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	default:
		return exitWith(2, fmt.Errorf("bench %q: known figures are ingest, rating, pipeline, check (with reserve), quota, replay, memory, sink (needs ALLOT_CLICKHOUSE) and all", which))
	}
	if which == "rating" || which == "all" {
		r, err := benchRating(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "check" || which == "reserve" || which == "all" {
		r, err := benchCheck(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "sink" || (which == "all" && benchClickHouseDSN() != "") {
		r, err := benchSink(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "quota" || which == "all" {
		r, err := benchQuota(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "memory" || which == "all" {
		r, err := benchMemory(ctx, o.customers, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
		if r, err = benchDedupMemory(ctx, o.events, stderr); err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "replay" || which == "all" {
		r, err := benchReplay(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if which == "pipeline" || which == "all" {
		r, err := benchPipeline(ctx, o, stderr)
		if err != nil {
			return err
		}
		results = append(results, r...)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tunit\tbaseline\tbaseline value\tratio")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%.3f\t%s\t%s\t%.3f\t%.2f\n", r.Name, r.Value, r.Unit, r.BaselineName, r.BaselineValue, r.Ratio)
	}
	return tw.Flush()
}

// benchIngest measures events/s through POST /v1/events (validated, published, acknowledged)
// against raw JetStream async publishes of the same payloads into the same stream, on the
// same embedded server and the same kind of connection, alternating rounds.
func benchIngest(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	r, err := benchIngestOn(ctx, o, progress, "", 1, "")
	if err != nil || o.natsURL == "" {
		return r, err
	}
	// The same figure on a NATS cluster (R3 streams), next to raw publishes to that cluster.
	rc, err := benchIngestOn(ctx, o, progress, o.natsURL, 3, "_cluster")
	return append(r, rc...), err
}

func benchIngestOn(ctx context.Context, o benchOptions, progress io.Writer, natsURL string, replicas int, suffix string) ([]benchResult, error) {
	n, done, err := benchNodeOn(ctx, true, "", natsURL, replicas)
	if err != nil {
		return nil, err
	}
	defer done()
	scope := events.Scope{Product: "bench", Env: "bench"}
	client := benchClient(o)
	var raws, ingests []float64
	for round := 0; round < o.rounds; round++ {
		rate, err := benchRawPublish(ctx, n, scope, benchEvents(fmt.Sprintf("r%d", round), o.events))
		if err != nil {
			return nil, err
		}
		raws = append(raws, rate)
		rate, err = client.ingest(ctx, n.httpURL(), benchEvents(fmt.Sprintf("h%d", round), o.events), o)
		if err != nil {
			return nil, err
		}
		ingests = append(ingests, rate)
		fmt.Fprintf(progress, "bench ingest%s: round %d/%d raw %.0f events/s, ingest %.0f events/s\n", suffix, round+1, o.rounds, raws[round], ingests[round])
	}
	raw, ing := median(raws), median(ingests)
	return []benchResult{{Name: "ingest_http" + suffix, Value: ing, Unit: "events/s", BaselineName: "jetstream_async_publish" + suffix, BaselineValue: raw, Ratio: ing / raw}}, nil
}

// benchHTTP posts batches with a fixed number of concurrent clients.
type benchHTTP struct {
	c   *http.Client
	key string
}

func benchClient(o benchOptions) *benchHTTP {
	return &benchHTTP{c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: o.concurrency * 2}}, key: "ak_bench_0123456789abcdef"}
}

// benchEvents makes n events of about 205 bytes as stored, spread over 1,000 customers.
func benchEvents(prefix string, n int) []events.Usage {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	out := make([]events.Usage, n)
	for i := range out {
		out[i] = events.Usage{
			ID: prefix + "-" + strconv.Itoa(i), Type: "api.call", Customer: "cust-" + strconv.Itoa(i%1000),
			Time: t0.Add(time.Duration(i) * time.Millisecond), Source: "bench",
			Data: map[string]any{"tokens": json.Number(strconv.Itoa(100 + i%900)), "model": "small", "region": "eu-west-1"},
		}
	}
	return out
}

func benchRawPublish(ctx context.Context, n *node, scope events.Scope, evs []events.Usage) (float64, error) {
	msgs := make([]*nats.Msg, len(evs))
	for i, e := range evs {
		data, _ := e.Encode()
		msgs[i] = &nats.Msg{Subject: events.UsageSubject(scope.Product, scope.Env, e.Customer), Data: data,
			Header: nats.Header{events.HeaderType: []string{events.TypeUsageRecorded}, events.HeaderEventHash: []string{"0123456789abcdef0123456789abcdef"},
				events.HeaderMsgID: []string{events.UsageMsgID(scope.Product, scope.Env, e.ID)}}}
	}
	start := time.Now()
	for _, m := range msgs {
		if _, err := n.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, fmt.Errorf("raw publish: %w", err)
		}
	}
	select {
	case <-n.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(2 * time.Minute):
		return 0, fmt.Errorf("raw publish: acknowledgements did not arrive")
	}
	return float64(len(msgs)) / time.Since(start).Seconds(), nil
}

// ingest posts evs in batches of o.batch from o.concurrency clients and returns events/s,
// timed from the first request (the bodies are encoded before).
func (h *benchHTTP) ingest(ctx context.Context, base string, evs []events.Usage, o benchOptions) (float64, error) {
	return h.send(ctx, base, benchBodies(evs, o), len(evs), o)
}

// benchBodies encodes the request bodies of ingest: the load generator's work, done before
// any clock starts (the raw baselines encode their messages beforehand too).
func benchBodies(evs []events.Usage, o benchOptions) [][]byte {
	var bodies [][]byte
	for i := 0; i < len(evs); i += o.batch {
		j := min(i+o.batch, len(evs))
		b, _ := json.Marshal(evs[i:j])
		bodies = append(bodies, b)
	}
	return bodies
}

// send posts the bodies (events in all) and returns events/s.
func (h *benchHTTP) send(ctx context.Context, base string, bodies [][]byte, events int, o benchOptions) (float64, error) {
	work := make(chan []byte, len(bodies))
	for _, b := range bodies {
		work <- b
	}
	close(work)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < o.concurrency; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range work {
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/events", bytes.NewReader(b))
				req.Header.Set("Authorization", "Bearer "+h.key)
				req.Header.Set("Content-Type", "application/json")
				resp, err := h.c.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						err = fmt.Errorf("ingest answered %s", resp.Status)
					}
				}
				if err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return 0, firstErr
	}
	return float64(events) / time.Since(start).Seconds(), nil
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
