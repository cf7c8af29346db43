package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"time"

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
