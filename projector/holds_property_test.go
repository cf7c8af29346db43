package projector

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"github.com/allot-dev/allot/events"
)

// holdSim runs a random scenario minute by minute: blocks granted (some effective later, some
// expiring), holds admitted one by one or several in a group commit, then committed (in full,
// partly) or released at random times, and the expiries written as they fall due. After every
// step, what the holds hold must not be more than the balance: holds alone never make overage
// (DESIGN.md: concurrent reservations never hold more than the balance). Written in review.
type holdSim struct {
	t     *testing.T
	a     *Account
	t0    time.Time
	log   []string
	holds []string
	nid   int
}

func (s *holdSim) logf(f string, args ...any) { s.log = append(s.log, fmt.Sprintf(f, args...)) }

func (s *holdSim) m(t time.Time) string { return fmt.Sprintf("m%g", t.Sub(s.t0).Minutes()) }

func (s *holdSim) check(at time.Time, what string) bool {
	if r, b := s.a.Reserved(at), s.a.Balance(at); r > b {
		s.t.Errorf("Reserved(%s)=%s > Balance=%s (%s)\n  %s", s.m(at), r, b, what, strings.Join(s.log, "\n  "))
		return false
	}
	return true
}

type holdScenario struct {
	dense      bool
	ordinary   bool // one plan + wallet, one TTL
	commitMode int  // 0 random, 1 early, 2 late
}

// runHoldScenario runs one random scenario; it returns admitted/refused counts and whether the invariant held.
func runHoldScenario(t *testing.T, rng *rand.Rand, cfg holdScenario) (adm, ref int, ok bool) {
	t0 := day("2030-01-01")
	s := &holdSim{t: t, a: newAccount("c"), t0: t0}
	prios := []int{10, 20, 30, 40, 100}
	mkBlock := func(at time.Time) {
		s.nid++
		id := fmt.Sprintf("b%d", s.nid)
		prio := prios[rng.Intn(len(prios))]
		eff := at
		if rng.Intn(3) == 0 {
			eff = at.Add(time.Duration(rng.Intn(40)) * time.Minute)
		}
		var exp *time.Time
		if rng.Intn(4) != 0 {
			exp = tp(eff.Add(time.Duration(1+rng.Intn(90)) * time.Minute))
		}
		amt := events.Credits(1+rng.Intn(100)) * cr
		fold(t, s.a, grant(id, "plan", prio, amt, eff, exp))
		if exp != nil {
			s.logf("grant %s prio %d amt %s eff %s exp %s (at %s)", id, prio, amt, s.m(eff), s.m(*exp), s.m(at))
		} else {
			s.logf("grant %s prio %d amt %s eff %s never (at %s)", id, prio, amt, s.m(eff), s.m(at))
		}
	}
	ttls := []int{2, 3, 5, 10, 15, 20, 30, 45, 60, 90}
	oneTTL := ttls[rng.Intn(len(ttls))]
	if cfg.ordinary {
		plExp := 1 + rng.Intn(60)
		fold(t, s.a, grant("plan", "plan", 20, events.Credits(1+rng.Intn(100))*cr, t0, tp(t0.Add(time.Duration(plExp)*time.Minute))))
		if rng.Intn(2) == 0 {
			fold(t, s.a, grant("wallet", "wallet", 100, events.Credits(1+rng.Intn(100))*cr, t0, nil))
		}
	} else {
		for n := 1 + rng.Intn(4); n > 0; n-- {
			mkBlock(t0)
		}
	}
	ok = true
	for m := 0; m < 150 && ok; m++ {
		now := t0.Add(time.Duration(m) * time.Minute)
		// expiry entries
		for _, b := range s.a.Blocks {
			if !b.Expired && b.ExpiresAt != nil && !now.Before(*b.ExpiresAt) {
				fold(t, s.a, entry{events.TypeCreditsExpired, events.CreditsExpired{Block: b.ID, Customer: "c", Amount: b.Remaining, At: *b.ExpiresAt}})
			}
		}
		for _, id := range s.holds {
			r := s.a.Reservations[id]
			if r.Status == StatusActive && !now.Before(r.ExpiresAt) {
				fold(t, s.a, entry{events.TypeReservationExpired, events.ReservationReleased{Reservation: id, Customer: "c", At: r.ExpiresAt}})
				s.logf("%s expires at %s", id, s.m(r.ExpiresAt))
			}
		}
		if !cfg.ordinary && m < 100 && rng.Intn(map[bool]int{true: 8, false: 25}[cfg.dense]) == 0 {
			mkBlock(now)
		}
		ok = ok && s.check(now, "after expiries/grants")
		// reservations, one or a batch
		if (!cfg.dense && m < 100 && rng.Intn(3) == 0) || (cfg.dense && m < 25 && rng.Intn(2) == 0) {
			n := 1
			if rng.Intn(3) == 0 {
				n = 2 + rng.Intn(3)
			}
			e := events.ReservationsCreated{Customer: "c"}
			for i := 0; i < n; i++ {
				s.nid++
				id := fmt.Sprintf("h%d", s.nid)
				amt := events.Credits(1+rng.Intn(60)) * cr
				ttl := oneTTL
				if !cfg.ordinary {
					ttl = ttls[rng.Intn(len(ttls))]
				}
				c, err := s.a.DecideReserveAfter(id, amt, time.Duration(ttl)*time.Minute, now, e.Reservations)
				if err == nil {
					e.Reservations = append(e.Reservations, c)
					s.holds = append(s.holds, id)
					adm++
					s.logf("reserve %s amt %s at %s until %s (batch %d/%d) ADMITTED", id, amt, s.m(now), s.m(c.ExpiresAt), i+1, n)
				} else {
					ref++
				}
			}
			if len(e.Reservations) > 0 {
				fold(t, s.a, entry{events.TypeReservationsCreated, e})
			}
			ok = ok && s.check(now, "after reserve")
		}
		// commits/releases at now+30s
		ct := now.Add(30 * time.Second)
		if rng.Intn(2) == 0 {
			ct = now
		}
		ids := append([]string(nil), s.holds...)
		rng.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
		for _, id := range ids {
			r := s.a.Reservations[id]
			if r.StatusAt(ct) != StatusActive {
				continue
			}
			last := !ct.Add(time.Minute).Before(r.ExpiresAt)
			do := false
			switch cfg.commitMode {
			case 0:
				do = rng.Intn(6) == 0
			case 1:
				do = true
			case 2:
				do = last
			}
			if cfg.dense && ct.Before(t0.Add(25*time.Minute)) && rng.Intn(3) != 0 {
				do = false
			}
			if !do {
				continue
			}
			switch k := rng.Intn(10); {
			case k < 7:
				c, err := s.a.DecideCommit(id, nil, ct)
				if err != nil {
					t.Fatal(err)
				}
				fold(t, s.a, entry{events.TypeReservationCommitted, c})
				s.logf("commit %s in full at %s: %v", id, s.m(ct), c.Allocations)
			case k < 9:
				amt := r.Amount * events.Credits(rng.Intn(10)) / 10
				c, err := s.a.DecideCommit(id, &amt, ct)
				if err != nil {
					t.Fatal(err)
				}
				fold(t, s.a, entry{events.TypeReservationCommitted, c})
				s.logf("commit %s partial %s at %s: %v", id, amt, s.m(ct), c.Allocations)
			default:
				c, err := s.a.DecideRelease(id, ct)
				if err != nil {
					t.Fatal(err)
				}
				fold(t, s.a, entry{events.TypeReservationReleased, c})
				s.logf("release %s at %s", id, s.m(ct))
			}
			if s.a.Overage > 0 {
				t.Errorf("overage %s after commit", s.a.Overage)
				ok = false
			}
			ok = ok && s.check(ct, "after commit")
		}
		ok = ok && s.check(ct, "after commits")
		ok = ok && s.check(now.Add(time.Minute-time.Nanosecond), "end of minute")
	}
	return
}

// Holds never hold more than the balance, and no full commit of an admitted hold goes into
// overage, over random scenarios of every kind (holdScenario).
func TestHoldsNeverExceedTheBalanceRandomly(t *testing.T) {
	n := int64(300) // per configuration; 3,000 each (24,000 scenarios) ran clean in review
	for _, cfg := range []holdScenario{{false, false, 0}, {false, false, 1}, {false, false, 2}, {false, true, 0}, {false, true, 2}, {true, false, 0}, {false, true, 1}, {true, false, 2}} {
		var adm, ref, runs int
		for seed := int64(0); seed < n*holdScenarioScale; seed++ {
			rng := rand.New(rand.NewSource(seed*7919 + int64(cfg.commitMode)*13 + map[bool]int64{true: 5}[cfg.ordinary] + map[bool]int64{true: 3}[cfg.dense]))
			a, r, ok := runHoldScenario(t, rng, cfg)
			adm, ref, runs = adm+a, ref+r, runs+1
			if !ok {
				t.Fatalf("cfg %+v seed %d failed", cfg, seed)
			}
		}
		t.Logf("cfg %+v: %d scenarios, %d holds admitted, %d refused", cfg, runs, adm, ref)
	}
}

var holdScenarioScale = int64(1)
