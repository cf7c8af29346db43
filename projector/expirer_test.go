package projector

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// The expirer writes credits.expired.v1 for a block with credits left once its expires_at is
// a grace period past — a debit from before the expiry folded meanwhile still burns the block
// — and reservation.expired.v1 for a hold past its TTL; each once, however often it scans.
func TestExpirerWritesExpiryEntries(t *testing.T) {
	js := bustest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := NewLedger()
	go Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
	scope := events.Scope{Product: "acme", Env: "live"}
	stream, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	expires := t0.Add(time.Hour)
	var now atomic.Pointer[time.Time]
	set := func(t time.Time) { now.Store(&t) }
	set(t0)
	write := func(typ string, decide func(*Account) (any, error)) {
		t.Helper()
		_, err := AppendDecided(ctx, js, stream, l, scope, "c1", "", func(a *Account) (string, any, error) {
			v, err := decide(a)
			return typ, v, err
		})
		require.NoError(t, err)
	}
	write(events.TypeCreditsGranted, func(a *Account) (any, error) {
		return events.CreditsGranted{Block: "blk", Customer: "c1", Amount: 10 * events.MicroPerCredit, Source: "promo", Priority: 10, EffectiveAt: t0, ExpiresAt: &expires, At: t0}, nil
	})
	write(events.TypeReservationCreated, func(a *Account) (any, error) { return a.DecideReserve("res_1", events.MicroPerCredit, time.Minute, t0) })

	x := &Expirer{JS: js, Ledger: l, Every: 10 * time.Millisecond, Grace: time.Minute, Now: func() time.Time { return *now.Load() }, Log: slog.New(slog.DiscardHandler)}
	go x.Run(ctx)
	account := func() *Account {
		var c *Account
		l.View(scope, "c1", func(a *Account, _ uint64) { c = a.clone() })
		return c
	}

	set(t0.Add(2 * time.Minute)) // the hold's TTL is over
	require.Eventually(t, func() bool { return account().Reservations["res_1"].Status == StatusExpired }, 5*time.Second, 10*time.Millisecond)
	set(expires.Add(30 * time.Second)) // past expires_at, within the grace
	time.Sleep(100 * time.Millisecond)
	// Usage from before the expiry, priced late: it still burns the block.
	rated := events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{{Customer: "c1", Rule: "r", UsageSeq: 1, Amount: 3 * events.MicroPerCredit, EventTime: expires.Add(-time.Second)}}}
	write(events.TypeUsageRated, func(*Account) (any, error) { return rated, nil })
	a := account()
	assert.False(t, a.block("blk").Expired, "no expiry entry within the grace")
	assert.Equal(t, events.Credits(7*events.MicroPerCredit), a.block("blk").Remaining)
	assert.Equal(t, events.Credits(0), a.Overage)

	set(expires.Add(2 * time.Minute))
	require.Eventually(t, func() bool { return account().block("blk").Expired }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond) // more scans write nothing more
	a = account()
	assert.Equal(t, events.Credits(7*events.MicroPerCredit), a.Expired)
	assert.Equal(t, events.Credits(0), a.Balance(expires.Add(2*time.Minute)))
	assert.Equal(t, int64(2), x.Expiries.Load(), "one entry for the block, one for the hold")
}

// The expirer finds what is due through the ledger's expiry index, built by the fold and
// rebuilt from a snapshot: a restarted process still expires the blocks and holds of its
// snapshot, and looks at nothing else.
func TestExpiryIndexAfterASnapshot(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	exp := t0.Add(time.Hour)
	subj := func(c string) string { return events.LedgerSubject("acme", "live", c) }
	l := NewLedger()
	f := feed{t: t, subj: subj("a")}
	f.apply(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_a", Customer: "a", Amount: 5, Source: "promo", Priority: 10, EffectiveAt: t0, ExpiresAt: &exp, At: t0}, l)
	f.apply(events.TypeReservationCreated, events.ReservationCreated{Reservation: "res_a", Customer: "a", Amount: 1, ExpiresAt: t0.Add(time.Minute), At: t0}, l)
	g := feed{t: t, subj: subj("b"), seq: f.seq}
	g.apply(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_b", Customer: "b", Amount: 5, Source: "wallet", Priority: 100, EffectiveAt: t0, At: t0}, l)

	b, err := json.Marshal(l)
	require.NoError(t, err)
	restored := NewLedger()
	require.NoError(t, json.Unmarshal(b, restored))
	for name, ledger := range map[string]*Ledger{"live": l, "restored": restored} {
		ledger.TrackDue() // as Run does
		x := &Expirer{Ledger: ledger, Grace: time.Minute}
		seq := g.seq
		due := func(at time.Time) []string { // what is due, written and folded as Run does
			exps, _ := x.due(at)
			var typs []string
			for _, e := range exps {
				b, err := json.Marshal(e.v)
				require.NoError(t, err)
				seq++
				require.NoError(t, ledger.Apply(seq, e.subject, e.typ, b))
				typs = append(typs, e.typ)
			}
			return typs
		}
		assert.Empty(t, due(t0.Add(30*time.Second)), name)
		assert.Equal(t, []string{events.TypeReservationExpired}, due(t0.Add(2*time.Minute)), name)
		assert.Empty(t, due(exp.Add(30*time.Second)), "%s: within the grace", name)
		assert.Equal(t, []string{events.TypeCreditsExpired}, due(exp.Add(2*time.Minute)), name)
		assert.Empty(t, due(exp.Add(time.Hour)), "%s: each due once", name)
	}
}

// BenchmarkExpirerTick: one tick of the expirer with a million customers holding expiring
// blocks, none due (a full scan under the read lock took 450-870 ms).
func BenchmarkExpirerTick(b *testing.B) {
	l := NewLedger()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	exp := t0.Add(24 * time.Hour)
	for i := 0; i < 1_000_000; i++ {
		c := fmt.Sprint("c", i)
		g, _ := json.Marshal(events.CreditsGranted{Block: "blk_" + c, Customer: c, Amount: 10, Source: "promo", Priority: 10, EffectiveAt: t0, ExpiresAt: &exp, At: t0})
		if err := l.Apply(uint64(i+1), events.LedgerSubject("acme", "live", c), events.TypeCreditsGranted, g); err != nil {
			b.Fatal(err)
		}
	}
	l.TrackDue()
	x := &Expirer{Ledger: l}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		x.due(t0.Add(time.Hour))
	}
}

// A block found used up when it expired, then refilled by a credit-back for usage from before
// its expiry, still gets its expiry entry — live and after a snapshot restore. And a fold no
// Expirer reads keeps no index at all.
func TestExpiryOfARefilledBlock(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	exp := t0.Add(time.Hour)
	subj := events.LedgerSubject("acme", "live", "a")
	for _, restore := range []bool{false, true} {
		l := NewLedger()
		f := feed{t: t, subj: subj}
		f.apply(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_a", Customer: "a", Amount: 5, Source: "promo", Priority: 10, EffectiveAt: t0, ExpiresAt: &exp, At: t0}, l)
		f.apply(events.TypeUsageRated, events.UsageRated{Customer: "a", Debits: []events.UsageDebited{{Customer: "a", Rule: "r", UsageSeq: 1, Amount: 5, EventTime: t0}}}, l)
		assert.Zero(t, l.dueIdx.blocks.Len()+l.dueIdx.others.Len(), "no Expirer reads this fold: nothing indexed")
		l.TrackDue()
		x := &Expirer{Ledger: l, Grace: time.Minute}
		exps, _ := x.due(exp.Add(2 * time.Minute))
		assert.Empty(t, exps, "used up at its expiry: nothing to expire")
		if restore {
			b, err := json.Marshal(l)
			require.NoError(t, err)
			l = NewLedger()
			require.NoError(t, json.Unmarshal(b, l))
			l.TrackDue()
			x.Ledger = l
		}
		f.apply(events.TypeUsageRated, events.UsageRated{Customer: "a", Debits: []events.UsageDebited{{Customer: "a", Rule: "r", UsageSeq: 2, Amount: -3, Kind: events.KindCreditBack, EventTime: t0.Add(time.Minute)}}}, l)
		exps, _ = x.due(exp.Add(3 * time.Minute))
		require.Len(t, exps, 1, "restore %v", restore)
		assert.Equal(t, events.TypeCreditsExpired, exps[0].typ)
		assert.Equal(t, events.Credits(3), exps[0].v.(events.CreditsExpired).Amount)
	}
}
