package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// In a group commit (Reservations.commit) a long hold decided earlier in the same batch is
// pending, not applied: it counts with its own end (found in review: it was counted by amount
// only, and the short hold was admitted, committed out of the credits the long hold needs).
func TestAShortHoldInAGroupCommitLeavesAPendingLongHoldFunded(t *testing.T) {
	t0 := day("2030-01-01")
	plan := t0.Add(10 * time.Minute)
	blocks := []entry{grant("promo", "promo", 10, 10*cr, t0, tp(t0.AddDate(1, 0, 0))), grant("plan", "plan", 20, 100*cr, t0, tp(plan))}
	now := t0.Add(time.Minute)

	// Sequential: refused (as TestAShortHoldLeavesLongerHoldsFunded expects).
	seq := newAccount("c")
	fold(t, seq, blocks...)
	long, err := seq.DecideReserve("long", 10*cr, 30*time.Minute, now)
	require.NoError(t, err)
	fold(t, seq, entry{events.TypeReservationCreated, long})
	_, err = seq.DecideReserve("short", 95*cr, 5*time.Minute, now)
	require.ErrorIs(t, err, ErrInsufficientCredits, "sequentially the short hold is refused")

	// The same two in one group commit, as Reservations.commit decides them.
	a := newAccount("c")
	fold(t, a, blocks...)
	e := events.ReservationsCreated{Customer: "c"}
	for _, r := range []struct {
		id     string
		amount events.Credits
		ttl    time.Duration
	}{{"long", 10 * cr, 30 * time.Minute}, {"short", 95 * cr, 5 * time.Minute}} {
		c, err := a.DecideReserveAfter(r.id, r.amount, r.ttl, now, e.Reservations)
		if err == nil {
			e.Reservations = append(e.Reservations, c)
		}
	}
	require.Len(t, e.Reservations, 1, "the short hold is refused in a batch as it is alone")
	fold(t, a, entry{events.TypeReservationsCreated, e})
	at := plan.Add(time.Second)
	assert.LessOrEqual(t, a.Reserved(at), a.Balance(at), "holds must never be more than the balance (DESIGN.md)")
}

// A customer whose long hold is already more than what lasts past a block's expiry (usage,
// which holds do not gate, took the wallet) may still hold what the expiring block shields
// wholly (its commit burns only the plan): it changes nothing at the expiry (found in review:
// it was refused for the shortfall that was there already).
func TestAShortHoldItsBlockShieldsIsAdmittedThoughLongerHoldsAreShort(t *testing.T) {
	t0 := day("2030-01-01")
	a := newAccount("c")
	fold(t, a,
		grant("wallet", "wallet", 40, 100*cr, t0, nil),
		entry{events.TypeReservationCreated, events.ReservationCreated{Reservation: "long", Customer: "c", Amount: 50 * cr, ExpiresAt: t0.Add(time.Hour), At: t0}},
		debit(1, 100*cr, t0), // usage takes the wallet
		grant("plan", "plan", 20, 1000*cr, t0, tp(t0.Add(10*time.Minute))),
	)
	now := t0.Add(time.Minute)
	require.GreaterOrEqual(t, a.Fundable(now, now.Add(5*time.Minute)), events.Credits(10*cr))
	before := a.Balance(t0.Add(10 * time.Minute))
	_, err := a.DecideReserve("short", 10*cr, 5*time.Minute, now)
	require.NoError(t, err, "the plan's 1000 shield the whole hold; what lasts past the plan's expiry (%s) is the same with or without it", before)
}
