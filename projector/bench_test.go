package projector

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/allot-dev/allot/events"
)

// benchRated is a 5-debit usage.rated.v1 entry like the rating worker's.
func benchRated() []byte {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var ds []events.UsageDebited
	for i := 0; i < 5; i++ {
		q := events.MustDecimal("123.5")
		ds = append(ds, events.UsageDebited{ID: "dbt_0123456789abcdef01234567", Kind: "debit", Customer: "cust-1", EventID: fmt.Sprint("ev-", i), Rule: "tokens", RuleVersion: 1,
			Quantity: q, Amount: 123456, EventTime: t0, UsageSeq: uint64(i + 1), PeriodStart: &t0, PeriodQuantity: &q})
	}
	data, _ := json.Marshal(events.UsageRated{ID: "rtd_x", Customer: "cust-1", FirstSeq: 1, LastSeq: 5, Debits: ds})
	return data
}

func BenchmarkApplyRated(b *testing.B) {
	data := benchRated()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for i := 0; i < b.N; i++ {
		a := newAccount("cust-1")
		a.Apply(1, events.TypeUsageRated, data)
	}
}

// BenchmarkFoldRated is BenchmarkApplyRated for the projection and replay, which keep only
// the state.
func BenchmarkFoldRated(b *testing.B) {
	data := benchRated()
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	var scratch ratedFold
	for i := 0; i < b.N; i++ {
		a := newAccount("cust-1")
		if _, err := a.fold(1, events.TypeUsageRated, data, &scratch); err != nil {
			b.Fatal(err)
		}
	}
}
