package projector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

const cr = events.MicroPerCredit

func day(s string) time.Time {
	t, err := time.Parse("2006-01-02", s)
	if err != nil {
		panic(err)
	}
	return t
}

func tp(t time.Time) *time.Time { return &t }

type entry struct {
	typ string
	v   any
}

func grant(id, source string, prio int, amount events.Credits, eff time.Time, exp *time.Time) entry {
	return entry{events.TypeCreditsGranted, events.CreditsGranted{Block: id, Customer: "c", Amount: amount, Source: source, Priority: prio, EffectiveAt: eff, ExpiresAt: exp, At: eff}}
}

func debit(usageSeq uint64, amount events.Credits, at time.Time) entry {
	return entry{events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: usageSeq, LastSeq: usageSeq,
		Debits: []events.UsageDebited{{ID: "d", Kind: events.KindDebit, Customer: "c", UsageSeq: usageSeq, Amount: amount, EventTime: at}}}}
}

// fold applies entries in order and returns the allocations of each debit.
func fold(t *testing.T, a *Account, es ...entry) [][]events.Allocation {
	t.Helper()
	var out [][]events.Allocation
	for _, e := range es {
		b, err := json.Marshal(e.v)
		require.NoError(t, err)
		applied, err := a.Apply(a.LastSeq+1, e.typ, b)
		require.NoError(t, err)
		for _, ap := range applied {
			if ap.Allocations != nil {
				out = append(out, ap.Allocations)
			}
		}
	}
	return out
}

func TestBurnOrderDesignExample(t *testing.T) {
	// trial 500 P10 exp Jan 15, promo 300 P10 exp Mar 1, plan 1000 P20 exp Apr 1, wallet 2000
	// P100 never; a debit of 1200 on Jan 10 takes 500, 300, 400 and leaves the wallet.
	a := newAccount("c")
	allocs := fold(t, a,
		grant("wallet", "wallet", 100, 2000*cr, day("2026-01-01"), nil),
		grant("plan", "plan", 20, 1000*cr, day("2026-01-01"), tp(day("2026-04-01"))),
		grant("promo", "promo", 10, 300*cr, day("2026-01-01"), tp(day("2026-03-01"))),
		grant("trial", "trial", 10, 500*cr, day("2026-01-01"), tp(day("2026-01-15"))),
		debit(1, 1200*cr, day("2026-01-10")),
	)
	require.Len(t, allocs, 1)
	assert.Equal(t, []events.Allocation{{Block: "trial", Amount: 500 * cr}, {Block: "promo", Amount: 300 * cr}, {Block: "plan", Amount: 400 * cr}}, allocs[0])
	assert.Equal(t, events.Credits(2600*cr), a.Balance(day("2026-01-10")))
	assert.Equal(t, events.Credits(2000*cr), a.block("wallet").Remaining)
}

func TestBurnOrder(t *testing.T) {
	jan, feb := day("2026-01-01"), day("2026-02-01")
	cheap, dear := events.MustDecimal("0"), events.MustDecimal("0.01")
	tests := []struct {
		name   string
		blocks []entry
		debits []entry
		want   [][]events.Allocation
	}{
		{"equal priority: earlier expiry first",
			[]entry{grant("late", "promo", 10, 10*cr, jan, tp(day("2026-06-01"))), grant("soon", "promo", 10, 10*cr, jan, tp(day("2026-03-01")))},
			[]entry{debit(1, 12*cr, feb)},
			[][]events.Allocation{{{Block: "soon", Amount: 10 * cr}, {Block: "late", Amount: 2 * cr}}}},
		{"never-expiring burns after any expiring block of its priority",
			[]entry{grant("forever", "topup", 40, 10*cr, jan, nil), grant("dated", "topup", 40, 10*cr, jan, tp(day("2030-01-01")))},
			[]entry{debit(1, 5*cr, feb)},
			[][]events.Allocation{{{Block: "dated", Amount: 5 * cr}}}},
		{"free before paid",
			[]entry{
				{events.TypeCreditsGranted, events.CreditsGranted{Block: "paid", Amount: 10 * cr, Source: "topup", Priority: 40, EffectiveAt: jan, CostBasis: &dear, At: jan}},
				{events.TypeCreditsGranted, events.CreditsGranted{Block: "free", Amount: 10 * cr, Source: "topup", Priority: 40, EffectiveAt: jan, CostBasis: &cheap, At: jan}},
			},
			[]entry{debit(1, 3*cr, feb)},
			[][]events.Allocation{{{Block: "free", Amount: 3 * cr}}}},
		{"then effective_at, then id",
			[]entry{grant("b", "plan", 20, 5*cr, jan, nil), grant("a", "plan", 20, 5*cr, jan, nil), grant("older", "plan", 20, 5*cr, day("2025-12-01"), nil)},
			[]entry{debit(1, 12*cr, feb)},
			[][]events.Allocation{{{Block: "older", Amount: 5 * cr}, {Block: "a", Amount: 5 * cr}, {Block: "b", Amount: 2 * cr}}}},
		{"equal effective_at: the earlier granted first, whatever the ids",
			[]entry{
				{events.TypeCreditsGranted, events.CreditsGranted{Block: "a-later", Amount: 5 * cr, Source: "plan", Priority: 20, EffectiveAt: jan, At: jan.Add(time.Hour)}},
				{events.TypeCreditsGranted, events.CreditsGranted{Block: "z-earlier", Amount: 5 * cr, Source: "plan", Priority: 20, EffectiveAt: jan, At: jan.Add(time.Minute)}},
			},
			[]entry{debit(1, 7*cr, feb)},
			[][]events.Allocation{{{Block: "z-earlier", Amount: 5 * cr}, {Block: "a-later", Amount: 2 * cr}}}},
		{"a block not yet effective is passed over",
			[]entry{grant("future", "trial", 10, 10*cr, day("2026-03-01"), nil), grant("now", "wallet", 100, 10*cr, jan, nil)},
			[]entry{debit(1, 4*cr, feb)},
			[][]events.Allocation{{{Block: "now", Amount: 4 * cr}}}},
		{"a block expiring between two debits",
			[]entry{grant("short", "promo", 10, 10*cr, jan, tp(day("2026-01-20"))), grant("wallet", "wallet", 100, 10*cr, jan, nil)},
			[]entry{debit(1, 3*cr, day("2026-01-19")), debit(2, 3*cr, day("2026-01-20"))},
			[][]events.Allocation{{{Block: "short", Amount: 3 * cr}}, {{Block: "wallet", Amount: 3 * cr}}}},
		{"what no block covers is overage",
			[]entry{grant("small", "plan", 20, 2*cr, jan, nil)},
			[]entry{debit(1, 5*cr, feb)},
			[][]events.Allocation{{{Block: "small", Amount: 2 * cr}, {Amount: 3 * cr}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newAccount("c")
			fold(t, a, tt.blocks...)
			assert.Equal(t, tt.want, fold(t, a, tt.debits...))
		})
	}
}

func TestOverageAndRefunds(t *testing.T) {
	a := newAccount("c")
	jan := day("2026-01-01")
	fold(t, a, grant("b", "plan", 20, 10*cr, jan, nil), debit(1, 15*cr, jan))
	assert.Equal(t, events.Credits(-5*cr), a.Balance(jan), "usage that happened is never dropped")
	// A credit-back pays overage first, then refills blocks.
	fold(t, a, debit(2, -7*cr, jan))
	assert.Equal(t, events.Credits(0), a.Overage)
	assert.Equal(t, events.Credits(2*cr), a.block("b").Remaining)
	assert.Equal(t, events.Credits(2*cr), a.Balance(jan))
	// A later grant adds to the balance.
	fold(t, a, grant("b2", "topup", 40, 1*cr, jan, nil))
	assert.Equal(t, events.Credits(3*cr), a.Balance(jan))
}

func TestExpiryEntry(t *testing.T) {
	a := newAccount("c")
	jan := day("2026-01-01")
	fold(t, a, grant("p", "promo", 10, 10*cr, jan, tp(day("2026-02-01"))), debit(1, 4*cr, jan))
	assert.Equal(t, events.Credits(6*cr), a.Balance(day("2026-01-31")))
	assert.Equal(t, events.Credits(0), a.Balance(day("2026-02-01")), "past expiry the block is not counted, even before the entry")
	fold(t, a, entry{events.TypeCreditsExpired, events.CreditsExpired{Block: "p", Amount: 6 * cr, At: day("2026-02-01")}})
	assert.True(t, a.block("p").Expired)
	assert.Equal(t, events.Credits(6*cr), a.Expired)
	// A debit with an event time before expiry that arrives after the entry goes to overage.
	assert.Equal(t, [][]events.Allocation{{{Amount: 1 * cr}}}, fold(t, a, debit(2, 1*cr, day("2026-01-20"))))
}

// A credit-back for usage after a block's expiry is not put back into that block even while
// its expiry entry is still on the way: the entry would take it away again.
func TestCreditBackPassesOverAnExpiredBlock(t *testing.T) {
	a := newAccount("c")
	jan := day("2026-01-01")
	fold(t, a, grant("p", "promo", 10, 10*cr, jan, tp(day("2026-02-01"))), grant("w", "wallet", 100, 5*cr, jan, nil),
		debit(1, 10*cr, day("2026-01-20")), debit(2, -4*cr, day("2026-02-02")))
	assert.Equal(t, events.Credits(0), a.block("p").Remaining)
	fold(t, a, entry{events.TypeCreditsExpired, events.CreditsExpired{Block: "p", Amount: 0, At: day("2026-02-01")}})
	assert.Equal(t, events.Credits(9*cr), a.Balance(day("2026-02-03")), "the wallet's 5 and the 4 credited back")
	assert.Equal(t, events.Credits(0), a.Expired)

	// Before expiry the credit-back refills the block that was burned.
	b := newAccount("c")
	fold(t, b, grant("p", "promo", 10, 10*cr, jan, tp(day("2026-02-01"))), debit(1, 10*cr, day("2026-01-20")), debit(2, -4*cr, day("2026-01-25")))
	assert.Equal(t, events.Credits(4*cr), b.block("p").Remaining)
}

func TestReservationsFold(t *testing.T) {
	a := newAccount("c")
	jan := day("2026-01-01")
	ttl := jan.Add(time.Minute)
	fold(t, a, grant("w", "wallet", 100, 10*cr, jan, nil),
		entry{events.TypeReservationCreated, events.ReservationCreated{Reservation: "r1", Amount: 4 * cr, ExpiresAt: ttl, At: jan}},
		entry{events.TypeReservationCreated, events.ReservationCreated{Reservation: "r2", Amount: 3 * cr, ExpiresAt: ttl, At: jan}})
	assert.Equal(t, events.Credits(10*cr), a.Balance(jan))
	assert.Equal(t, events.Credits(7*cr), a.Reserved(jan))
	assert.Equal(t, events.Credits(3*cr), a.Effective(jan))
	assert.Equal(t, events.Credits(0), a.Reserved(ttl), "a hold past its TTL holds nothing")
	allocs := fold(t, a, entry{events.TypeReservationCommitted, events.ReservationCommitted{Reservation: "r1", Amount: 5 * cr, At: jan.Add(time.Second)}},
		entry{events.TypeReservationReleased, events.ReservationReleased{Reservation: "r2", At: jan.Add(time.Second)}})
	assert.Equal(t, [][]events.Allocation{{{Block: "w", Amount: 5 * cr}}}, allocs, "commit burns the actual amount, more than held")
	assert.Equal(t, events.Credits(5*cr), a.Balance(jan))
	assert.Equal(t, events.Credits(0), a.Reserved(jan))
	assert.Equal(t, StatusCommitted, a.Reservations["r1"].Status)
	assert.Equal(t, StatusReleased, a.Reservations["r2"].Status)
	// Commit after release changes nothing.
	fold(t, a, entry{events.TypeReservationCommitted, events.ReservationCommitted{Reservation: "r2", Amount: 3 * cr, At: jan}})
	assert.Equal(t, events.Credits(5*cr), a.Balance(jan))
	// A retried grant (same block id) is applied once.
	fold(t, a, grant("w", "wallet", 100, 10*cr, jan, nil))
	assert.Equal(t, events.Credits(5*cr), a.Balance(jan))
}

// A hold must not be admitted on credits its commit would burn from under a longer hold
// (DESIGN.md: concurrent reservations never hold more than the balance). Commits burn in burn
// order, so a short hold committed in full may take the credits that outlast a block's expiry
// — the ones a long hold was admitted on — before the block's own.
func TestAShortHoldLeavesLongerHoldsFunded(t *testing.T) {
	t0 := day("2030-01-01")
	plan := tp(t0.Add(10 * time.Minute))
	// promo 10 (priority 10, a year) burns before plan 100 (priority 20, expiring in 10 minutes).
	promoFirst := []entry{grant("promo", "promo", 10, 10*cr, t0, tp(t0.AddDate(1, 0, 0))), grant("plan", "plan", 20, 100*cr, t0, plan)}
	hold := func(id string, amount events.Credits, at time.Time, ttl time.Duration) entry {
		return entry{events.TypeReservationCreated, events.ReservationCreated{Reservation: id, Customer: "c", Amount: amount, ExpiresAt: at.Add(ttl), At: at}}
	}
	for _, tc := range []struct {
		name   string
		blocks []entry
		holds  []entry
		amount events.Credits
		ttl    time.Duration
		admit  bool
	}{
		{"promo burned first, plan expires under the long hold: refused",
			promoFirst,
			[]entry{hold("long", 10*cr, t0, 30*time.Minute)}, 95 * cr, 5 * time.Minute, false},
		{"85 would still take the promo's 10 first: refused",
			promoFirst,
			[]entry{hold("long", 10*cr, t0, 30*time.Minute)}, 85 * cr, 5 * time.Minute, false},
		{"what the lasting credits can spare past the long hold is admitted",
			[]entry{grant("promo", "promo", 10, 20*cr, t0, tp(t0.AddDate(1, 0, 0))), grant("plan", "plan", 20, 100*cr, t0, plan)},
			[]entry{hold("long", 10*cr, t0, 30*time.Minute)}, 10 * cr, 5 * time.Minute, true},
		{"the expiring block burned first: its credits shield the lasting ones",
			[]entry{grant("promo", "promo", 30, 10*cr, t0, tp(t0.AddDate(1, 0, 0))), grant("plan", "plan", 20, 100*cr, t0, plan)},
			[]entry{hold("long", 10*cr, t0, 30*time.Minute)}, 95 * cr, 5 * time.Minute, true},
		{"no hold outlasts the new one",
			promoFirst,
			[]entry{hold("long", 10*cr, t0, 3*time.Minute)}, 95 * cr, 5 * time.Minute, true},
		{"the long hold ends before the block expires",
			promoFirst,
			[]entry{hold("long", 10*cr, t0, 9*time.Minute)}, 95 * cr, 5 * time.Minute, true},
		{"an expiring block that becomes effective later shields nothing: a commit before then burns the promo",
			[]entry{grant("promo", "promo", 30, 10*cr, t0, tp(t0.AddDate(1, 0, 0))), grant("plan", "plan", 20, 100*cr, t0.Add(2*time.Minute), plan), grant("w", "wallet", 40, 100*cr, t0, tp(t0.Add(10*time.Minute)))},
			[]entry{hold("long", 10*cr, t0, 30*time.Minute)}, 95 * cr, 5 * time.Minute, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAccount("c")
			fold(t, a, append(append([]entry{}, tc.blocks...), tc.holds...)...)
			now := t0.Add(time.Minute)
			_, err := a.DecideReserve("new", tc.amount, tc.ttl, now)
			if tc.admit {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInsufficientCredits)
		})
	}
}
