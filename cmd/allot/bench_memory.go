package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// benchMemory measures the heap held per active customer by the balance projection: each
// customer with one credit block and rated usage against it. The figure is compared with the
// 1 KiB budget of DESIGN.md (there is no "raw" memory baseline; the budget is the yardstick).
func benchMemory(ctx context.Context, customers int, progress io.Writer) ([]benchResult, error) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grant, _ := json.Marshal(events.CreditsGranted{Block: "blk_0123456789abcdef01234567", Customer: "x", Amount: 1000 * events.MicroPerCredit, Source: "plan", Priority: 20, EffectiveAt: t0, At: t0})
	l := projector.NewLedger()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	seq := uint64(0)
	for i := 0; i < customers; i++ {
		if i%100000 == 0 && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		cust := fmt.Sprintf("customer-%07d", i)
		subject := events.LedgerSubject("bench", "bench", cust)
		seq++
		if err := l.Apply(seq, subject, events.TypeCreditsGranted, grant); err != nil {
			return nil, err
		}
		rated, _ := json.Marshal(events.UsageRated{Customer: cust, FirstSeq: seq, LastSeq: seq, Debits: []events.UsageDebited{{UsageSeq: seq, Amount: 1234, EventTime: t0}}})
		seq++
		if err := l.Apply(seq, subject, events.TypeUsageRated, rated); err != nil {
			return nil, err
		}
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / float64(customers)
	runtime.KeepAlive(l)
	fmt.Fprintf(progress, "bench memory: %d customers hold %.1f MiB: %.0f bytes each\n", customers, float64(after.HeapAlloc-before.HeapAlloc)/(1<<20), per)
	return []benchResult{{Name: "memory_per_customer", Value: per, Unit: "bytes", BaselineName: "budget_per_customer", BaselineValue: 1024, Ratio: per / 1024}}, nil
}

// benchDedupMemory measures what each remembered event id costs the server: the heap after
// publishing n events with Nats-Msg-Id, against the same events published without one, on a
// fresh embedded server each.
func benchDedupMemory(ctx context.Context, n int, progress io.Writer) ([]benchResult, error) {
	heapAfter := func(withIDs bool) (uint64, error) {
		node, done, err := benchNode(ctx, true)
		if err != nil {
			return 0, err
		}
		defer done()
		evs := benchEvents("dedup", n)
		scope := events.Scope{Product: "bench", Env: "bench"}
		msgs := make([]*nats.Msg, len(evs))
		for i, e := range evs {
			data, _ := e.Encode()
			msgs[i] = &nats.Msg{Subject: events.UsageSubject(scope.Product, scope.Env, e.Customer), Data: data, Header: nats.Header{}}
			if withIDs {
				msgs[i].Header.Set(events.HeaderMsgID, events.UsageMsgID(scope.Product, scope.Env, e.ID))
			}
		}
		runtime.GC()
		var before runtime.MemStats
		runtime.ReadMemStats(&before)
		for _, m := range msgs {
			if _, err := node.js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
				return 0, err
			}
		}
		<-node.js.PublishAsyncComplete()
		runtime.GC()
		var after runtime.MemStats
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(msgs)
		return after.HeapAlloc - min(after.HeapAlloc, before.HeapAlloc), nil
	}
	plain, err := heapAfter(false)
	if err != nil {
		return nil, err
	}
	withIDs, err := heapAfter(true)
	if err != nil {
		return nil, err
	}
	per := (float64(withIDs) - float64(plain)) / float64(n)
	fmt.Fprintf(progress, "bench memory: %d events with ids hold %.1f MiB more than without: %.0f bytes per remembered id\n", n, (float64(withIDs)-float64(plain))/(1<<20), per)
	return []benchResult{{Name: "dedup_bytes_per_id", Value: per, Unit: "bytes", BaselineName: "heap_per_event_without_id", BaselineValue: float64(plain) / float64(n), Ratio: per / max(float64(plain)/float64(n), 1)}}, nil
}
