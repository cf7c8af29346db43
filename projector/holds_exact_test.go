package projector

import (
	"math/rand"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// Ordinary plan + wallet, one TTL: a hold spanning the plan's expiry is not refused for holds
// that end before the plan expires and that the plan alone covers (it was, by Fundable's
// shortcut, in about 5% of such decisions: found in review; fundableExactly looks again).
func TestAHoldEndingBeforeThePlanExpiresLeavesTheWalletToALaterOne(t *testing.T) {
	t0 := day("2030-01-01")
	a := newAccount("c")
	fold(t, a, grant("plan", "plan", 20, 100*cr, t0, tp(t0.Add(10*time.Minute))), grant("wallet", "wallet", 100, 20*cr, t0, nil))
	ttl := 5 * time.Minute
	h, err := a.DecideReserve("A", 90*cr, ttl, t0.Add(2*time.Minute))
	require.NoError(t, err)
	fold(t, a, entry{events.TypeReservationCreated, h})
	now := t0.Add(6 * time.Minute)
	t.Logf("effective at m6: %s, Fundable(m6, m11): %s", a.Effective(now), a.Fundable(now, now.Add(ttl)))
	_, err = a.DecideReserve("B", 10*cr, ttl, now)
	require.NoError(t, err, "A (ends m7) commits at most 90 from the plan (100, expires m10); the wallet's 20 cover B (ends m11)")
}

// For a plan block (priority 20, expiring at P) and a wallet (never expiring), with one TTL, a
// hold is safe exactly when the effective balance covers it and the wallet covers the holds
// active after P once the holds ending by P took what the plan cannot: admission must refuse
// what that rule does not allow, and nothing else.
func TestPlanAndWalletHoldsMatchTheExactRule(t *testing.T) {
	t0 := day("2030-01-01")
	var needless, total, unsafe int
	var example string
	for seed := int64(0); seed < 5000; seed++ {
		rng := rand.New(rand.NewSource(seed))
		P := t0.Add(time.Duration(5+rng.Intn(30)) * time.Minute)
		plan, wallet := events.Credits(1+rng.Intn(100))*cr, events.Credits(rng.Intn(60))*cr
		a := newAccount("c")
		fold(t, a, grant("plan", "plan", 20, plan, t0, tp(P)))
		if wallet > 0 {
			fold(t, a, grant("wallet", "wallet", 100, wallet, t0, nil))
		}
		ttl := time.Duration(1+rng.Intn(10)) * time.Minute
		type h struct {
			amt events.Credits
			end time.Time
		}
		var hs []h
		for m := 0; m < 40 && P.After(t0.Add(time.Duration(m)*time.Minute)); m++ {
			now := t0.Add(time.Duration(m) * time.Minute)
			if rng.Intn(2) != 0 {
				continue
			}
			x := events.Credits(1+rng.Intn(50)) * cr
			// oracle (no commits so far, so plan/wallet are as granted)
			var R, E, N events.Credits
			for _, o := range hs {
				if o.end.After(now) {
					R += o.amt
					if o.end.After(P) {
						N += o.amt
					} else {
						E += o.amt
					}
				}
			}
			end := now.Add(ttl)
			if end.After(P) {
				N += x
			} else {
				E += x
			}
			ok := plan+wallet-R >= x && wallet-max(0, E-plan) >= N
			_, err := a.DecideReserve("r", x, ttl, now)
			total++
			if err == nil && !ok {
				unsafe++
			}
			if err != nil && ok {
				needless++
				if example == "" {
					example = err.Error()
				}
				continue
			}
			if err == nil {
				c, _ := a.DecideReserve(string(rune('a'+len(hs))), x, ttl, now)
				fold(t, a, entry{events.TypeReservationCreated, c})
				hs = append(hs, h{x, end})
			}
		}
	}
	t.Logf("decisions %d, needless refusals %d, admitted though unsafe %d; e.g. %s", total, needless, unsafe, example)
	require.Zero(t, unsafe)
	require.Zero(t, needless, "refused needlessly, e.g. %s", example)
}
