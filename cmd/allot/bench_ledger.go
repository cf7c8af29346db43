package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/rating"
)

// latencies runs total requests from conc workers as fast as they go and returns their
// latencies and the rate.
func latencies(ctx context.Context, conc, total int, do func(i int) error) ([]time.Duration, float64, error) {
	return paced(ctx, conc, total, 0, do)
}

// paced runs total requests from conc workers, request i due at start + i/rate (rate 0: as
// fast as possible). A request a worker reaches late — every worker was waiting on the
// server — is timed from when it was due, so a server that falls behind is charged for the
// queueing it causes; one sent on time is timed from when it left.
func paced(ctx context.Context, conc, total int, rate float64, do func(i int) error) ([]time.Duration, float64, error) {
	lat := make([]time.Duration, total)
	var next int
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				i := next
				next++
				mu.Unlock()
				if i >= total || ctx.Err() != nil {
					return
				}
				t0 := time.Now()
				if rate > 0 {
					due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if wait := time.Until(due); wait > 0 {
						// Early: the clock starts when the request leaves, not when the
						// sleep was due to end (a late wake-up is the generator's, not the
						// server's).
						time.Sleep(wait)
						t0 = time.Now()
					} else {
						t0 = due // late because every worker was busy: the server's queueing
					}
				}
				err := do(i)
				lat[i] = time.Since(t0)
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
	achieved := float64(total) / time.Since(start).Seconds()
	slices.Sort(lat)
	return lat, achieved, firstErr
}

// memPoint is the runtime's allocation and collection counters at one moment: the bench
// shows what each phase allocates per request and how often the collector ran, because on
// two cores the collector's CPU is what the latency tail is made of.
type memPoint struct {
	alloc, heap uint64
	gcs         uint32
	pause       uint64
}

func readMem() memPoint {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memPoint{alloc: m.TotalAlloc, heap: m.HeapAlloc, gcs: m.NumGC, pause: m.PauseTotalNs}
}

func (m memPoint) since(before memPoint, requests int) string {
	return fmt.Sprintf("%.0f B allocated per request, %d collections, heap %.0f MiB",
		float64(m.alloc-before.alloc)/float64(requests), m.gcs-before.gcs, float64(m.heap)/(1<<20))
}

func pct(lat []time.Duration, p float64) float64 {
	if len(lat) == 0 {
		return 0
	}
	i := int(float64(len(lat)-1) * p)
	return float64(lat[i]) / float64(time.Millisecond)
}

func httpDo(c *http.Client, method, url, body string, want int) error {
	var rd io.Reader
	if body != "" {
		rd = bytes.NewReader([]byte(body))
	}
	req, _ := http.NewRequest(method, url, rd)
	req.Header.Set("Authorization", "Bearer ak_bench_0123456789abcdef")
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s answered %d", method, url, resp.StatusCode)
	}
	return nil
}

// benchCheck measures balance and entitlement checks over loopback HTTP against the same
// server's /healthz (the HTTP floor) at the same concurrency, and reservation latency against
// a raw JetStream publish with an expected subject sequence (the floor of any linearizable
// write).
func benchCheck(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	n, done, err := benchNode(ctx, true)
	if err != nil {
		return nil, err
	}
	defer done()
	base := n.httpURL()
	conc := 16
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, MaxConnsPerHost: conc * 2}}
	const customers = 1000
	setup := func(method, path, body string, want int) error { return httpDo(c, method, base+path, body, want) }
	if err := setup("PUT", "/v1/features/chat", `{"rule":"tokens","overdraft_limit":"5"}`, 200); err != nil {
		return nil, err
	}
	for i := 0; i < customers; i++ {
		if err := setup("POST", fmt.Sprintf("/v1/customers/c%d/grants", i), `{"amount":"1000000","source":"wallet"}`, 201); err != nil {
			return nil, err
		}
	}
	rc, err := newRawHTTP(base, "Bearer ak_bench_0123456789abcdef", 128)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	total := max(o.events/5, 2000)
	floor, floorRate, err := latencies(ctx, conc, total, func(i int) error { return rc.do("GET", "/healthz", nil, 200) })
	if err != nil {
		return nil, err
	}
	checks, checkRate, err := latencies(ctx, conc, total, func(i int) error {
		if i%2 == 0 {
			return rc.do("GET", fmt.Sprintf("/v1/customers/c%d/balance", i%customers), nil, 200)
		}
		return rc.do("POST", "/v1/entitlements/check", fmt.Appendf(nil, `{"customer":"c%d","feature":"chat","quantity":"100"}`, i%customers), 200)
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench check: %d requests at concurrency %d: healthz %.0f req/s p99 %.3f ms; checks %.0f req/s p50 %.3f ms p99 %.3f ms\n",
		total, conc, floorRate, pct(floor, .99), checkRate, pct(checks, .5), pct(checks, .99))
	// The latency target is stated at 20,000 req/s: pace both the floor and the checks there,
	// in --rounds alternating rounds of five seconds each at the default --events, so that one
	// stall of the machine (at 20k req/s, 10 ms delay 200 requests) is not the whole 1% tail.
	const checkRateTarget = 20000
	pacedTotal := max(total, min(o.events, 5*checkRateTarget))
	const auth = "Bearer ak_bench_0123456789abcdef"
	m0 := readMem()
	floorAt, checksAt, floorP99s, checkP99s, err := alternatePaced(ctx, o.rounds,
		loadSpec{Base: base, Auth: auth, Spread: 1, Total: pacedTotal, Conc: 64, Rate: checkRateTarget,
			Requests: []loadRequest{{Method: "GET", Path: "/healthz", Want: 200}}},
		loadSpec{Base: base, Auth: auth, Spread: customers, Total: pacedTotal, Conc: 64, Rate: checkRateTarget,
			Requests: []loadRequest{
				{Method: "GET", Path: "/v1/customers/c{n}/balance", Want: 200},
				{Method: "POST", Path: "/v1/entitlements/check", Body: `{"customer":"c{n}","feature":"chat","quantity":"100"}`, Want: 200},
			}})
	if err != nil {
		return nil, err
	}
	m1 := readMem()
	fmt.Fprintf(progress, "bench check: paced at %d req/s, %d rounds of %d: healthz p50 %.3f ms p99 %.3f ms (rounds: %s); checks p50 %.3f ms p99 %.3f ms (rounds: %s)\n",
		checkRateTarget, max(o.rounds, 1), pacedTotal, pct(floorAt, .5), pct(floorAt, .99), msList(floorP99s), pct(checksAt, .5), pct(checksAt, .99), msList(checkP99s))
	fmt.Fprintf(progress, "bench check: the server's process (the paced load comes from another), both sides: %s\n", m1.since(m0, 2*max(o.rounds, 1)*pacedTotal))

	// Reservations: one customer per request stream, so contention is realistic but bounded;
	// against the usual alternative, as for quota increments: a small HTTP service doing
	// check-and-increment in Redis with a Lua script (a hold is a checked increment too), in
	// --rounds rounds alternating between the two, so that a noisy spell of the machine does
	// not fall on one side only (measured one after the other, the ratio moved 0.70-1.14).
	rtotal := max(o.events/10, 1000)
	redisURL, stopRedis, err := redisQuotaService(ctx, conc)
	if err != nil {
		return nil, err
	}
	defer stopRedis()
	rr, err := newRawHTTP(redisURL, "", 4*conc)
	if err != nil {
		return nil, err
	}
	defer rr.close()
	perRound := max(rtotal/max(o.rounds, 1), 500)
	redisInc := func(i int) error { return rr.do("POST", fmt.Sprintf("/increment?customer=c%d", i%customers), nil, 200) }
	reserve := func(i int) error {
		return rc.do("POST", "/v1/reservations", fmt.Appendf(nil, `{"customer":"c%d","amount":"1"}`, i%customers), 201)
	}
	// A warm-up round on each side, not measured: both then run on connections and state that
	// exist already (every customer's first hold makes its account's reservation maps).
	for _, warm := range []func(i int) error{redisInc, reserve} {
		if _, _, err := latencies(ctx, conc, customers, warm); err != nil {
			return nil, err
		}
	}
	redisRes, res, redisResRate, resRate, err := alternate(ctx, o.rounds, conc, perRound, redisInc, reserve)
	if err != nil {
		return nil, err
	}
	// Raw floor: a JetStream publish with an expected last subject sequence, per customer.
	last := map[int]uint64{}
	var lmu sync.Mutex
	raw, rawRate, err := latencies(ctx, conc, rtotal, func(i int) error {
		cust := i % customers
		lmu.Lock()
		seq := last[cust]
		lmu.Unlock()
		subj := events.LedgerSubject("benchraw", "bench", fmt.Sprintf("c%d", cust))
		ack, err := n.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: []byte(`{}`)}, jetstream.WithExpectLastSequencePerSubject(seq))
		if err != nil {
			return nil // a lost race: the floor counts the attempt
		}
		lmu.Lock()
		if ack.Sequence > last[cust] {
			last[cust] = ack.Sequence
		}
		lmu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench reserve: %d reservations: %.0f req/s p50 %.3f ms p99 %.3f ms; raw expected-sequence publish %.0f/s p99 %.3f ms; redis+lua service %.0f/s p99 %.3f ms\n",
		len(res), resRate, pct(res, .5), pct(res, .99), rawRate, pct(raw, .99), redisResRate, pct(redisRes, .99))
	const reserveRateTarget = 2000
	resAt, _, err := pacedElsewhere(ctx, loadSpec{Base: base, Auth: auth, Spread: customers, Total: rtotal, Conc: 64, Rate: reserveRateTarget,
		Requests: []loadRequest{{Method: "POST", Path: "/v1/reservations", Body: `{"customer":"c{n}","amount":"1"}`, Want: 201}}})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench reserve: paced at %d req/s: p50 %.3f ms p99 %.3f ms\n", reserveRateTarget, pct(resAt, .5), pct(resAt, .99))
	// One busy customer: every request for the same account, whose holds pile up (all stay
	// active), and a process appends one entry per customer at a time.
	if err := setup("POST", "/v1/customers/hot/grants", `{"amount":"1000000","source":"wallet"}`, 201); err != nil {
		return nil, err
	}
	hot, hotRate, err := latencies(ctx, conc, rtotal, func(i int) error {
		return rc.do("POST", "/v1/reservations", []byte(`{"customer":"hot","amount":"1"}`), 201)
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench reserve: one customer, %d reservations at concurrency %d: %.0f req/s p50 %.3f ms p99 %.3f ms\n",
		rtotal, conc, hotRate, pct(hot, .5), pct(hot, .99))
	return []benchResult{
		{Name: "check_throughput", Value: checkRate, Unit: "req/s", BaselineName: "http_healthz_throughput", BaselineValue: floorRate, Ratio: checkRate / floorRate},
		{Name: "check_p99", Value: pct(checks, .99), Unit: "ms", BaselineName: "http_healthz_p99", BaselineValue: pct(floor, .99), Ratio: pct(checks, .99) / pct(floor, .99)},
		{Name: "check_p50", Value: pct(checks, .5), Unit: "ms", BaselineName: "http_healthz_p50", BaselineValue: pct(floor, .5), Ratio: pct(checks, .5) / pct(floor, .5)},
		{Name: "check_p99_at_20k_rps", Value: pct(checksAt, .99), Unit: "ms", BaselineName: "http_healthz_p99_at_20k_rps", BaselineValue: pct(floorAt, .99), Ratio: pct(checksAt, .99) / pct(floorAt, .99)},
		{Name: "reserve_p99_at_2k_rps", Value: pct(resAt, .99), Unit: "ms", BaselineName: "jetstream_expected_seq_publish_p99", BaselineValue: pct(raw, .99), Ratio: pct(resAt, .99) / pct(raw, .99)},
		{Name: "reserve_p99", Value: pct(res, .99), Unit: "ms", BaselineName: "jetstream_expected_seq_publish_p99", BaselineValue: pct(raw, .99), Ratio: pct(res, .99) / pct(raw, .99)},
		{Name: "reserve_throughput", Value: resRate, Unit: "req/s", BaselineName: "jetstream_expected_seq_publish", BaselineValue: rawRate, Ratio: resRate / rawRate},
		{Name: "reserve_throughput_vs_redis", Value: resRate, Unit: "req/s", BaselineName: "redis_lua_service_throughput", BaselineValue: redisResRate, Ratio: resRate / redisResRate},
		{Name: "reserve_one_customer_p99", Value: pct(hot, .99), Unit: "ms", BaselineName: "jetstream_expected_seq_publish_p99", BaselineValue: pct(raw, .99), Ratio: pct(hot, .99) / pct(raw, .99)},
		{Name: "reserve_one_customer_throughput", Value: hotRate, Unit: "req/s", BaselineName: "jetstream_expected_seq_publish", BaselineValue: rawRate, Ratio: hotRate / rawRate},
	}, nil
}

// benchReplay measures rebuilding the ledger projection from the stream against a raw
// ordered consumer reading the same stream.
func benchReplay(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	n, done, err := benchNode(ctx, false)
	if err != nil {
		return nil, err
	}
	defer done()
	client := benchClient(o)
	evs := benchEvents("replay", o.events)
	if _, err := client.ingest(ctx, n.httpURL(), evs, o); err != nil {
		return nil, err
	}
	for n.ledger.Items() < int64(len(evs)) {
		time.Sleep(5 * time.Millisecond)
	}
	s, err := n.js.Stream(ctx, bus.LedgerStream)
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	target := info.State.LastSeq
	var raws, folds []float64
	for round := 0; round < o.rounds; round++ {
		runtime.GC()
		raw, rawCPU, err := benchOrderedRead(ctx, n.js, bus.LedgerStream, target)
		if err != nil {
			return nil, err
		}
		// The fold is allot replay's own: projector.Rebuild. Both phases start from a fresh
		// collection: the raw read, right after one, used to run on a clean heap while the
		// fold inherited the read's garbage and paid for collecting it.
		l := projector.NewLedger()
		runtime.GC()
		start, cpu0 := time.Now(), processCPU()
		folded, err := projector.Rebuild(ctx, n.js, bus.LedgerStream, l, target, nil)
		if err != nil {
			return nil, err
		}
		fold, foldCPU := float64(folded)/time.Since(start).Seconds(), processCPU()-cpu0
		if l.Seq() != target {
			return nil, fmt.Errorf("replay stopped at %d of %d", l.Seq(), target)
		}
		raws, folds = append(raws, raw), append(folds, fold)
		fmt.Fprintf(progress, "bench replay: round %d/%d %d ledger entries: raw ordered consumer %.0f entries/s (%.2f µs CPU each), replay %.0f entries/s (%.2f µs CPU each)\n",
			round+1, o.rounds, target, raw, perEvent(rawCPU, int(target)), fold, perEvent(foldCPU, folded))
	}
	results := []benchResult{{Name: "replay", Value: median(folds), Unit: "entries/s", BaselineName: "jetstream_ordered_consumer", BaselineValue: median(raws), Ratio: median(folds) / median(raws)}}
	r, err := benchReplayRating(ctx, n, o, progress)
	if err != nil {
		return nil, err
	}
	return append(results, r), nil
}

// benchReplayRating measures replay's other fold: rating's partitions rebuilt from the usage
// stream (rating.Rebuild, as `allot replay` runs it, every event on the view that rated it),
// next to a raw ordered consumer reading the same events.
func benchReplayRating(ctx context.Context, n *node, o benchOptions, progress io.Writer) (benchResult, error) {
	us, err := n.js.Stream(ctx, bus.UsageStream)
	if err != nil {
		return benchResult{}, err
	}
	info, err := us.Info(ctx)
	if err != nil {
		return benchResult{}, err
	}
	target := info.State.LastSeq
	cat, views, err := readConfigStream(ctx, n.js)
	if err != nil {
		return benchResult{}, err
	}
	upTo := map[int]uint64{}
	for p := range n.raters {
		upTo[p] = target
	}
	var raws, folds []float64
	for round := 0; round < o.rounds; round++ {
		runtime.GC()
		raw, rawCPU, err := benchOrderedRead(ctx, n.js, bus.UsageStream, target)
		if err != nil {
			return benchResult{}, err
		}
		runtime.GC()
		start, cpu0 := time.Now(), processCPU()
		rebuilt, err := rating.Rebuild(ctx, n.js, bus.UsageStream, upTo, views, ratingSource{cat}.RatingView, rating.RebuildHooks{})
		if err != nil {
			return benchResult{}, err
		}
		fold, foldCPU := float64(target)/time.Since(start).Seconds(), processCPU()-cpu0
		var events uint64
		for p, r := range rebuilt {
			if r.Err != nil {
				return benchResult{}, fmt.Errorf("rebuilding rating partition %d: %w", p, r.Err)
			}
			events += r.Events
		}
		if events != target {
			return benchResult{}, fmt.Errorf("rating rebuild folded %d of %d usage events", events, target)
		}
		raws, folds = append(raws, raw), append(folds, fold)
		fmt.Fprintf(progress, "bench replay: round %d/%d %d usage events: raw ordered consumer %.0f events/s (%.2f µs CPU each), rating rebuilt %.0f events/s (%.2f µs CPU each)\n",
			round+1, o.rounds, target, raw, perEvent(rawCPU, int(target)), fold, perEvent(foldCPU, int(target)))
	}
	return benchResult{Name: "replay_rating", Value: median(folds), Unit: "events/s", BaselineName: "jetstream_ordered_consumer_usage", BaselineValue: median(raws), Ratio: median(folds) / median(raws)}, nil
}

// benchOrderedRead is replay's raw baseline: stream read from the start through sequence
// target by an ordered consumer as bus.FoldOrdered reads it (the same pull size, each
// message's metadata parsed), folding nothing. It returns messages/s and the process CPU used.
func benchOrderedRead(ctx context.Context, js jetstream.JetStream, stream string, target uint64) (float64, time.Duration, error) {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		return 0, 0, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, 0, err
	}
	defer bus.DropOrdered(ctx, js, stream, cons)
	defer it.Stop()
	start, cpu0 := time.Now(), processCPU()
	var items int
	for {
		m, err := it.Next()
		if err != nil {
			return 0, 0, err
		}
		md, _ := m.Metadata()
		items++
		if md.Sequence.Stream >= target {
			break
		}
	}
	return float64(items) / time.Since(start).Seconds(), processCPU() - cpu0, nil
}
