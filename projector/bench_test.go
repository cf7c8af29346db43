package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
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
		if _, err := a.fold(1, events.TypeUsageRated, data, &scratch, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReplayFold is the fold of a replay without the stream: usage.rated.v1 entries of
// 1,000 customers, six debits each, as the rating worker writes them, through ApplyMsg with
// their headers, in stream order. One op is one entry.
func BenchmarkReplayFold(b *testing.B) {
	const customers, entries = 1000, 20000
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type msg struct {
		subject string
		h       nats.Header
		data    []byte
	}
	msgs := make([]msg, entries)
	usage := map[string]uint64{}
	for i := range msgs {
		cust := fmt.Sprintf("cust-%d", i%customers)
		var ds []events.UsageDebited
		for j := 0; j < 6; j++ {
			usage[cust]++
			q := events.MustDecimal("123.5")
			at := t0.Add(time.Duration(i*6+j) * time.Millisecond)
			ds = append(ds, events.UsageDebited{ID: fmt.Sprintf("dbt_%024d", i*6+j), Kind: "debit", Customer: cust, EventID: fmt.Sprint("ev-", i*6+j), Rule: "tokens", RuleVersion: 1,
				Quantity: q, Amount: 123456, EventTime: at, UsageSeq: usage[cust], PeriodStart: &t0, PeriodQuantity: &q})
		}
		r := events.UsageRated{ID: fmt.Sprint("rtd_", i), Customer: cust, FirstSeq: ds[0].UsageSeq, LastSeq: ds[5].UsageSeq, Debits: ds}
		data, err := r.AppendJSON(nil)
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = msg{events.LedgerSubject("acme", "live", cust), nats.Header{events.HeaderType: []string{events.TypeUsageRated}, "Nats-Msg-Id": []string{r.ID}}, data}
	}
	b.ReportAllocs()
	b.ResetTimer()
	var l *Ledger
	for i := 0; i < b.N; i++ {
		if i%entries == 0 {
			b.StopTimer()
			l = NewLedger()
			b.StartTimer()
		}
		m := msgs[i%entries]
		if err := l.ApplyMsg(uint64(i%entries+1), m.subject, m.h, m.data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLaneIncrements is quota increments through one process's lane group committer on
// embedded JetStream, 16 callers over 1,000 customers, as `bench quota` sends them but
// without HTTP: the cost of deciding, appending and folding an increment.
func BenchmarkLaneIncrements(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emb := bustest.Start(b)
	js := bustest.Connect(b, emb)
	l := NewLedger()
	go Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
	stream, err := js.Stream(ctx, bus.LedgerStream)
	if err != nil {
		b.Fatal(err)
	}
	qc := NewQuotaCommands(js, func(context.Context) (jetstream.Stream, error) { return stream, nil }, l)
	scope := events.Scope{Product: "acme", Env: "live"}
	q := []events.Quota{{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(1 << 40),
		Period: events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}}}
	one := []events.Decimal{events.DecimalFromInt(1)}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := qc.Increment(ctx, scope, fmt.Sprintf("c%d", i%1000), "", q, one, now); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(qc.Requests.Load())/float64(max(qc.Entries.Load(), 1)), "increments/entry")
}

// BenchmarkReserveBeforeABlockExpires: a hold whose TTL spans a block's expiry, for a customer
// with 100,000 active holds (Fundable looks at the balance at that expiry; it scanned every
// hold for it, 6.7 ms a decision).
func BenchmarkReserveBeforeABlockExpires(b *testing.B) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	a := newAccount("c")
	exp := t0.Add(2 * time.Hour)
	g, _ := json.Marshal(events.CreditsGranted{Block: "plan", Customer: "c", Amount: 1_000_000 * cr, Source: "plan", Priority: 20, EffectiveAt: t0.Add(-time.Hour), ExpiresAt: &exp, At: t0})
	if _, err := a.Apply(1, events.TypeCreditsGranted, g); err != nil {
		b.Fatal(err)
	}
	w, _ := json.Marshal(events.CreditsGranted{Block: "wallet", Customer: "c", Amount: 1_000_000 * cr, Source: "wallet", Priority: 100, EffectiveAt: t0.Add(-time.Hour), At: t0})
	if _, err := a.Apply(2, events.TypeCreditsGranted, w); err != nil {
		b.Fatal(err)
	}
	for i := 0; i < 100_000; i++ {
		r, _ := json.Marshal(events.ReservationCreated{Reservation: fmt.Sprint("r", i), Customer: "c", Amount: 1, ExpiresAt: t0.Add(time.Duration(i%600+1) * time.Second), At: t0})
		if _, err := a.Apply(uint64(i+3), events.TypeReservationCreated, r); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		if _, err := a.DecideReserve("x", cr, 3*time.Hour, t0); err != nil {
			b.Fatal(err)
		}
	}
}
