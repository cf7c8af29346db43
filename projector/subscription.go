package projector

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/allot-dev/allot/events"
)

// Subscription statuses.
const (
	SubActive   = "active"
	SubPastDue  = "past_due" // prepaid: the cycle ended, still within the grace period
	SubLapsed   = "lapsed"   // prepaid: not renewed within the grace period
	SubCanceled = "canceled"
)

// Subscription is a customer's subscription as folded from the ledger.
type Subscription struct {
	ID         string          `json:"id"`
	Plan       events.Plan     `json:"plan"`
	Start      time.Time       `json:"start"`
	Cycle      int64           `json:"cycle"`
	CycleStart time.Time       `json:"cycle_start"`
	CycleEnd   time.Time       `json:"cycle_end"`
	Canceled   *time.Time      `json:"canceled_at,omitempty"`
	UsedBefore events.Credits  `json:"used_before"` // usedTotal when the cycle began
	LastUsage  *events.Credits `json:"last_cycle_usage,omitempty"`
}

// StatusAt is the subscription's status at now.
func (s *Subscription) StatusAt(now time.Time) string {
	switch {
	case s.Canceled != nil:
		return SubCanceled
	case now.Before(s.CycleEnd) || s.Plan.Mode == events.PlanPostpaid:
		return SubActive
	case now.Before(s.CycleEnd.Add(time.Duration(s.Plan.GraceSeconds) * time.Second)):
		return SubPastDue
	}
	return SubLapsed
}

// Errors of subscription decisions.
var (
	ErrSubscriptionNotFound = errors.New("subscription not found")
	ErrSubscriptionCanceled = errors.New("subscription canceled")
	// ErrPostpaidExists: a customer has one postpaid subscription at a time (each bills all of the
	// customer's usage).
	ErrPostpaidExists = errors.New("a postpaid subscription exists")
	ErrAlreadyRenewed = errors.New("the current cycle is already granted")
	// ErrSubscriptionExists: the id is a subscription's already. Ids are derived from the
	// Idempotency-Key, so it is a key used again for a new subscription after its record (and
	// the account's memory of the command) expired.
	ErrSubscriptionExists = errors.New("the subscription exists")
	// ErrSubscriptionEnds: the next cycle would end past the times allot can write (year 9999).
	ErrSubscriptionEnds = errors.New("the subscription cannot be renewed")
)

// CycleBlock is the id of a subscription's plan block for cycle k (rollover: its rollover block).
func CycleBlock(sub string, k int64, rollover bool) string {
	if rollover {
		return sub + "_r" + strconv.FormatInt(k, 10)
	}
	return sub + "_c" + strconv.FormatInt(k, 10)
}

func cycleWindow(p events.Plan, start time.Time, k int64) (time.Time, time.Time) {
	return p.Period.Boundary(start, k), p.Period.Boundary(start, k+1)
}

// usedTotal is what the customer has used, net: usage debited less what was credited back
// (volume pricing lowers a period's total as usage grows), plus reservations committed. A
// postpaid cycle's usage summary is its difference across the cycle — without the
// credit-backs, a cycle whose volume-priced total was 50.50 was billed 100.
func (a *Account) usedTotal() events.Credits {
	return SubCredits(addCredits(a.Debited, a.Committed), a.CreditedBack)
}

// DecideSubscribe starts a subscription on plan at start, granting cycle 0.
func (a *Account) DecideSubscribe(id string, plan events.Plan, start, now time.Time) (events.SubscriptionStarted, error) {
	if _, ok := a.Subscriptions[id]; ok {
		return events.SubscriptionStarted{}, fmt.Errorf("%w: %s", ErrSubscriptionExists, id)
	}
	if plan.Mode == events.PlanPostpaid {
		// A postpaid cycle bills the customer's usage over it, all of it: a second postpaid
		// subscription would bill the same usage again.
		for _, other := range a.Subscriptions {
			if other.Plan.Mode == events.PlanPostpaid && other.Canceled == nil {
				return events.SubscriptionStarted{}, fmt.Errorf("%w: %s bills this customer's usage already; cancel it first", ErrPostpaidExists, other.ID)
			}
		}
	}
	s, e := cycleWindow(plan, start, 0)
	if !events.TimeInRange(e) {
		// Refused here, naming what to change: it could not be written (an entry's times are
		// RFC 3339), and failing there read as allot being unavailable, retry after retry.
		return events.SubscriptionStarted{}, &FieldError{"start", "the plan's first cycle would end at " + e.Format(time.RFC3339) + ", " + events.TimeRangeMsg}
	}
	return events.SubscriptionStarted{Subscription: id, Customer: a.Customer, Plan: plan, Start: start.UTC(), At: now.UTC(),
		Grant: events.Cycle{Index: 0, Start: s, End: e, Block: CycleBlock(id, 0, false), Amount: plan.Credits}}, nil
}

// DecideRenew grants the cycle that holds now, once: when it is granted already the answer is
// ErrAlreadyRenewed. Rollover carries RolloverPercent of what the previous cycle's block has
// left (at most RolloverCap) into a rollover block, when the previous cycle is the one renewed.
//
// A postpaid subscription advances one cycle at a time, each renewal carrying the usage summary
// (whoever asks: a renewal without it left the cycle unbilled): after downtime every cycle
// missed is granted in turn, where jumping to the cycle of now skipped the ones between — their
// plan blocks never granted, their usage made overage.
func (a *Account) DecideRenew(id string, now time.Time, withUsage bool) (events.SubscriptionRenewed, error) {
	sub := a.Subscriptions[id]
	switch {
	case sub == nil:
		return events.SubscriptionRenewed{}, ErrSubscriptionNotFound
	case sub.Canceled != nil:
		return events.SubscriptionRenewed{}, ErrSubscriptionCanceled
	}
	// The cycle holding now, found by the period's window math (stepping from the start took
	// about forever for a minute plan started long ago).
	k := max(sub.Cycle, sub.Plan.Period.Index(sub.Start, now))
	if sub.Plan.Mode == events.PlanPostpaid {
		k, withUsage = min(k, sub.Cycle+1), true
	}
	if k <= sub.Cycle {
		return events.SubscriptionRenewed{}, ErrAlreadyRenewed
	}
	s, e := cycleWindow(sub.Plan, sub.Start, k)
	if !events.TimeInRange(e) {
		return events.SubscriptionRenewed{}, fmt.Errorf("%w: its next cycle would end at %s, %s", ErrSubscriptionEnds, e.Format(time.RFC3339), events.TimeRangeMsg)
	}
	c := events.Cycle{Index: k, Start: s, End: e, Block: CycleBlock(id, k, false), Amount: sub.Plan.Credits}
	if k == sub.Cycle+1 && sub.Plan.RolloverPercent != nil {
		// What the cycle left unused: its block's remainder, or — once the expiry entry has been
		// folded (a renewal more than the expirer's grace after the cycle end) — what was left
		// when it expired.
		left := events.Credits(0)
		if prev := a.block(CycleBlock(id, sub.Cycle, false)); prev != nil {
			left = prev.Remaining
			if prev.Expired {
				left = prev.Lapsed
			}
		}
		if left > 0 {
			r, _ := left.Decimal().Mul(*sub.Plan.RolloverPercent).Mul(events.MustDecimal("0.01")).Credits()
			if r < 0 {
				r = 0
			}
			r = min(r, left) // half-up rounding must not roll over more than is left
			if sub.Plan.RolloverCap != nil {
				r = min(r, *sub.Plan.RolloverCap)
			}
			if r > 0 {
				c.Rollover, c.RollBlock = r, CycleBlock(id, k, true)
			}
		}
	}
	out := events.SubscriptionRenewed{Subscription: id, Customer: a.Customer, Grant: c, At: now.UTC()}
	if withUsage {
		used := SubCredits(a.usedTotal(), sub.UsedBefore)
		out.Usage = &used
	}
	return out, nil
}

// DecideCancel ends renewals.
func (a *Account) DecideCancel(id string, now time.Time) (events.SubscriptionCanceled, error) {
	sub := a.Subscriptions[id]
	switch {
	case sub == nil:
		return events.SubscriptionCanceled{}, ErrSubscriptionNotFound
	case sub.Canceled != nil:
		return events.SubscriptionCanceled{}, ErrSubscriptionCanceled
	}
	e := events.SubscriptionCanceled{Subscription: id, Customer: a.Customer, At: now.UTC()}
	if sub.Plan.Mode == events.PlanPostpaid {
		// The last summary: without it the usage since the last renewal was never billed
		// (the expirer does not renew a canceled subscription).
		used := SubCredits(a.usedTotal(), sub.UsedBefore)
		e.Usage = &used
	}
	return e, nil
}

func (a *Account) grantCycle(c events.Cycle, at time.Time) {
	if a.block(c.Block) == nil {
		exp := c.End
		a.addBlock(&Block{ID: c.Block, Source: events.SourcePlan, Priority: 20, EffectiveAt: c.Start, ExpiresAt: &exp, CreatedAt: at, Granted: c.Amount, Remaining: c.Amount})
	}
	if c.Rollover > 0 && a.block(c.RollBlock) == nil {
		exp := c.End
		a.addBlock(&Block{ID: c.RollBlock, Source: events.SourceRollover, Priority: 30, EffectiveAt: c.Start, ExpiresAt: &exp, CreatedAt: at, Granted: c.Rollover, Remaining: c.Rollover})
	}
}

func (a *Account) applySubscription(typ string, data []byte) (bool, error) {
	switch typ {
	case events.TypeSubscriptionStarted:
		var e events.SubscriptionStarted
		if err := jsonUnmarshal(data, &e); err != nil {
			return false, err
		}
		if a.Subscriptions[e.Subscription] != nil {
			return false, nil
		}
		if a.Subscriptions == nil {
			a.Subscriptions = map[string]*Subscription{}
		}
		a.Subscriptions[e.Subscription] = &Subscription{ID: e.Subscription, Plan: e.Plan, Start: e.Start.UTC(), Cycle: 0,
			CycleStart: e.Grant.Start.UTC(), CycleEnd: e.Grant.End.UTC(), UsedBefore: a.usedTotal()}
		a.noteDue(e.Grant.End.UTC(), dueCycle)
		a.grantCycle(e.Grant, e.At.UTC())
		return true, nil
	case events.TypeSubscriptionRenewed:
		var e events.SubscriptionRenewed
		if err := jsonUnmarshal(data, &e); err != nil {
			return false, err
		}
		sub := a.Subscriptions[e.Subscription]
		if sub == nil || e.Grant.Index <= sub.Cycle {
			return false, nil // renewed already: applied once per (subscription, cycle)
		}
		if e.Grant.Rollover > 0 {
			// The rolled-over credits leave the previous block, so they are not counted twice
			// (and not reported as expired when that block's expiry is written).
			if prev := a.block(CycleBlock(e.Subscription, sub.Cycle, false)); prev != nil {
				prev.Remaining -= min(prev.Remaining, e.Grant.Rollover)
			}
		}
		a.grantCycle(e.Grant, e.At.UTC())
		sub.Cycle, sub.CycleStart, sub.CycleEnd = e.Grant.Index, e.Grant.Start.UTC(), e.Grant.End.UTC()
		a.noteDue(sub.CycleEnd, dueCycle)
		sub.UsedBefore = a.usedTotal()
		sub.LastUsage = e.Usage
		return true, nil
	case events.TypeSubscriptionCanceled:
		var e events.SubscriptionCanceled
		if err := jsonUnmarshal(data, &e); err != nil {
			return false, err
		}
		sub := a.Subscriptions[e.Subscription]
		if sub == nil || sub.Canceled != nil {
			return false, nil
		}
		at := e.At.UTC()
		sub.Canceled = &at
		if e.Usage != nil {
			sub.LastUsage = e.Usage
		}
		return true, nil
	}
	return false, nil
}
