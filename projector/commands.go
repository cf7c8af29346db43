package projector

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/allot-dev/allot/events"
)

// Errors of the decisions a customer's state can refuse.
var (
	ErrInsufficientCredits = errors.New("insufficient credits")
	ErrReservationNotFound = errors.New("reservation not found")
	ErrReservationExpired  = errors.New("reservation expired")
	ErrReservationEnded    = errors.New("reservation already committed or released")
	// ErrCarriedOut is what a decision returns for a command the account shows was carried
	// out already by the same command id (a retry the account's recent command ids no longer
	// name): AppendDecided answers it as written, and writes nothing.
	ErrCarriedOut = errors.New("carried out already")
)

// CarriedOut reports whether the command cmd (an entry's command id) is the one that created
// reservation id, or ended it — remembered on the reservation for as long as the account
// keeps it, past the recentCommands ids the account remembers.
func (a *Account) CarriedOut(cmd, id string, ended bool) bool {
	r := a.Reservations[id]
	if cmd == "" || r == nil {
		return false
	}
	if !ended {
		return true // the reservation's id is derived from the command's key
	}
	return r.EndedBy != 0 && r.EndedBy == fnv1a(cmd)
}

// FieldError names the offending field of a command.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

// Reservation TTLs.
const (
	DefaultReservationTTL = 5 * time.Minute
	MaxReservationTTL     = 24 * time.Hour
)

// Grant is a request for a new credit block.
type Grant struct {
	Amount      events.Credits
	Source      string
	Priority    *int
	EffectiveAt *time.Time
	ExpiresAt   *time.Time
	CostBasis   *events.Decimal
}

// DecideGrant checks a grant and returns the entry that records it.
func DecideGrant(customer, block string, g Grant, now time.Time) (events.CreditsGranted, error) {
	if g.Amount <= 0 {
		return events.CreditsGranted{}, &FieldError{"amount", "must be greater than 0"}
	}
	prio, ok := events.DefaultPriority(g.Source)
	if !ok {
		return events.CreditsGranted{}, &FieldError{"source", fmt.Sprintf("%q is not one of plan, topup, promo, trial, rollover, wallet", g.Source)}
	}
	if g.Priority != nil {
		if *g.Priority < 0 || *g.Priority > 1_000_000 {
			return events.CreditsGranted{}, &FieldError{"priority", "must be between 0 and 1000000"}
		}
		prio = *g.Priority
	}
	eff := now.UTC()
	if g.EffectiveAt != nil {
		if !events.TimeInRange(*g.EffectiveAt) {
			return events.CreditsGranted{}, &FieldError{"effective_at", events.TimeRangeMsg}
		}
		eff = g.EffectiveAt.UTC()
	}
	if g.ExpiresAt != nil && !events.TimeInRange(*g.ExpiresAt) {
		return events.CreditsGranted{}, &FieldError{"expires_at", events.TimeRangeMsg}
	}
	var exp *time.Time
	if g.ExpiresAt != nil {
		e := g.ExpiresAt.UTC()
		if !e.After(eff) {
			return events.CreditsGranted{}, &FieldError{"expires_at", "must be after effective_at"}
		}
		exp = &e
	}
	if g.CostBasis != nil && g.CostBasis.Sign() < 0 {
		return events.CreditsGranted{}, &FieldError{"cost_basis", "must not be negative"}
	}
	return events.CreditsGranted{Block: block, Customer: customer, Amount: g.Amount, Source: g.Source, Priority: prio,
		EffectiveAt: eff, ExpiresAt: exp, CostBasis: g.CostBasis, At: now.UTC()}, nil
}

// DecideGrant is the package's DecideGrant on the account: a grant that would take the
// customer's credits past the most allot keeps (the int64 micro-credits' end,
// 9,223,372,036,854.775807 credits) is refused, rather than summed into a balance that
// saturates.
func (a *Account) DecideGrant(block string, g Grant, now time.Time) (events.CreditsGranted, error) {
	e, err := DecideGrant(a.Customer, block, g, now)
	if err != nil {
		return e, err
	}
	total := a.Credit
	for _, b := range a.Blocks {
		total = addCredits(total, b.Remaining)
	}
	if addCredits(total, g.Amount) == math.MaxInt64 {
		return events.CreditsGranted{}, &FieldError{"amount", fmt.Sprintf("would take the customer's credits past the most allot keeps (%s); the customer holds %s", events.Credits(math.MaxInt64), total)}
	}
	return e, nil
}

// Fundable is what a hold from now until until can take: the least, over [now, until), of the
// balance less the holds active then. Within that time the balance falls only where a block
// expires (usage aside), so the instants to look at are now and each expiry in between. A hold
// that counted credits expiring before it does would, from that expiry on, hold more than the
// balance (DESIGN.md: concurrent reservations never do), and its commit would debit into
// overage credits the reservation had promised. A block effective later counts from then.
//
// At a later expiry it counts every hold active now, also those that will have expired by then
// (a little stricter than exact): counting them exactly scans every hold for each expiry, 6.7 ms
// a decision for a customer with 100,000 holds in the last TTL before a block expired. So it is
// the shortcut: what it refuses, fundableExactly looks at again.
func (a *Account) Fundable(now, until time.Time) events.Credits {
	reserved := a.Reserved(now)
	least := SubCredits(a.Balance(now), reserved)
	for _, b := range a.Blocks {
		if b.ExpiresAt != nil && b.ExpiresAt.After(now) && b.ExpiresAt.Before(until) && !b.Expired && b.Remaining > 0 {
			least = min(least, SubCredits(a.Balance(*b.ExpiresAt), reserved))
		}
	}
	return least
}

// A heldFor is a hold as the admission of another sees it: what it holds and until when.
type heldFor struct {
	amount events.Credits
	end    time.Time
}

// activeHolds is the holds active at now and the pending ones (decided earlier in the same
// group commit, not applied yet).
func (a *Account) activeHolds(now time.Time, pending []events.ReservationCreated) []heldFor {
	var hs []heldFor
	for _, r := range a.Reservations {
		if r.StatusAt(now) == StatusActive {
			hs = append(hs, heldFor{r.Amount, r.ExpiresAt})
		}
	}
	for _, p := range pending {
		hs = append(hs, heldFor{p.Amount, p.ExpiresAt})
	}
	return hs
}

// coverAt is what the credits lasting past a block expiry e leave for the holds hs still active
// at e (need), once the holds ended by e were committed in full. A commit burns in burn order,
// so it may take the credits that last past e before those of the blocks that expire by e: of
// what the ended holds hold, the lasting credits lose what those blocks cannot have taken
// first — the blocks ahead of every lasting one in burn order, effective now, and lasting
// until the last ended hold ends (a commit may come at any time before its hold ends).
func (a *Account) coverAt(now, e time.Time, hs []heldFor) (left, need events.Credits) {
	var ended events.Credits
	var endedBy time.Time
	for _, h := range hs {
		if h.end.After(e) {
			need = addCredits(need, h.amount)
			continue
		}
		ended = addCredits(ended, h.amount)
		if h.end.After(endedBy) {
			endedBy = h.end
		}
	}
	var shield events.Credits
	for _, b := range a.Blocks { // in burn order
		if b.Expired || b.Remaining <= 0 {
			continue
		}
		if b.ExpiresAt == nil || b.ExpiresAt.After(e) { // lasts past e
			if !b.EffectiveAt.After(e) {
				break // a commit may burn it before anything after it
			}
			continue // effective only after e: no commit before e burns it
		}
		if !b.EffectiveAt.After(now) && !b.ExpiresAt.Before(endedBy) {
			shield = addCredits(shield, b.Remaining)
		}
	}
	left = a.Balance(e)
	if taken := SubCredits(ended, shield); taken > 0 {
		left = SubCredits(left, taken)
	}
	return left, need
}

// fundableExactly is Fundable without its shortcut: at each block expiry before until, only
// the holds still active then count, and those ended by then count as committed in full, in
// burn order (coverAt). It is what Fundable refuses that it looks at again: a hold ending
// before a plan block expires no longer keeps a later hold off the wallet that outlasts it.
func (a *Account) fundableExactly(now, until time.Time, amount events.Credits, pending []events.ReservationCreated) bool {
	hs := append(a.activeHolds(now, pending), heldFor{amount, until})
	var held events.Credits
	for _, h := range hs {
		held = addCredits(held, h.amount)
	}
	if a.Balance(now) < held {
		return false
	}
	for _, b := range a.Blocks {
		if b.ExpiresAt != nil && b.ExpiresAt.After(now) && b.ExpiresAt.Before(until) && !b.Expired && b.Remaining > 0 {
			if left, need := a.coverAt(now, *b.ExpiresAt, hs); left < need {
				return false
			}
		}
	}
	return true
}

// holdsAfterStayFunded reports whether a hold of amount until until leaves the holds that
// outlast it funded. Fundable looks at the hold's own life; this looks past it: a short hold
// committed in full could otherwise burn, in burn order, the credits a longer hold was admitted
// on, and leave it more than the balance once a block expired (DESIGN.md: concurrent
// reservations never hold more than the balance). So at each block expiry from until up to the
// end of the last hold active now (pending ones among them), what coverAt leaves must cover the
// holds still active. The new hold is refused only where it makes that worse: a customer
// already short at an expiry (usage, which holds do not gate, took what lasts) may still hold
// what its commit cannot take from the lasting credits.
func (a *Account) holdsAfterStayFunded(now, until time.Time, amount events.Credits, pending []events.ReservationCreated) bool {
	last := a.lastExpiry
	for _, p := range pending {
		if p.ExpiresAt.After(last) {
			last = p.ExpiresAt
		}
	}
	if !last.After(until) {
		return true // no hold outlasts this one (the common case: one TTL for every hold)
	}
	without := a.activeHolds(now, pending)
	with := append(without[:len(without):len(without)], heldFor{amount, until})
	for _, x := range a.Blocks {
		if x.Expired || x.Remaining <= 0 || x.ExpiresAt == nil || x.ExpiresAt.Before(until) || !x.ExpiresAt.Before(last) {
			continue
		}
		left, need := a.coverAt(now, *x.ExpiresAt, with)
		if need == 0 || left >= need {
			continue
		}
		if leftWithout, _ := a.coverAt(now, *x.ExpiresAt, without); left < leftWithout {
			return false
		}
	}
	return true
}

// DecideReserve holds amount for ttl if the effective balance covers it, now and until the
// hold expires (Fundable).
func (a *Account) DecideReserve(id string, amount events.Credits, ttl time.Duration, now time.Time) (events.ReservationCreated, error) {
	return a.DecideReserveAfter(id, amount, ttl, now, nil)
}

// DecideReserveAfter is DecideReserve after the pending holds, decided but not yet applied
// (the ones before it in a group commit).
func (a *Account) DecideReserveAfter(id string, amount events.Credits, ttl time.Duration, now time.Time, pendingHolds []events.ReservationCreated) (events.ReservationCreated, error) {
	var pending events.Credits
	for _, p := range pendingHolds {
		pending = addCredits(pending, p.Amount)
	}
	if amount <= 0 {
		return events.ReservationCreated{}, &FieldError{"amount", "must be greater than 0"}
	}
	if ttl <= 0 || ttl > MaxReservationTTL {
		return events.ReservationCreated{}, &FieldError{"ttl_seconds", fmt.Sprintf("must be between 1 and %d", int(MaxReservationTTL.Seconds()))}
	}
	if !a.holdsAfterStayFunded(now, now.Add(ttl), amount, pendingHolds) {
		return events.ReservationCreated{}, fmt.Errorf("%w: a hold of %s until %s could be committed, in burn order, out of credits that holds lasting longer need once other blocks expire", ErrInsufficientCredits, amount, now.Add(ttl).UTC().Format(time.RFC3339))
	}
	if eff := SubCredits(a.Fundable(now, now.Add(ttl)), pending); eff < amount && !a.fundableExactly(now, now.Add(ttl), amount, pendingHolds) {
		if e := SubCredits(a.Effective(now), pending); e >= amount {
			return events.ReservationCreated{}, fmt.Errorf("%w: effective balance %s, but not all of it lasts the hold's %s (blocks expire before it would)", ErrInsufficientCredits, e, ttl)
		}
		return events.ReservationCreated{}, fmt.Errorf("%w: effective balance %s, requested %s", ErrInsufficientCredits, max(eff, 0), amount)
	}
	return events.ReservationCreated{Reservation: id, Customer: a.Customer, Amount: amount, ExpiresAt: now.UTC().Add(ttl), At: now.UTC()}, nil
}

func (a *Account) activeReservation(id string, now time.Time) (*Reservation, error) {
	r := a.Reservations[id]
	if r == nil {
		if expired, ok := a.forgottenHold(id); ok {
			if expired {
				return nil, ErrReservationExpired
			}
			return nil, fmt.Errorf("%w (forgotten since)", ErrReservationEnded)
		}
		return nil, ErrReservationNotFound
	}
	switch r.StatusAt(now) {
	case StatusExpired:
		return nil, ErrReservationExpired
	case StatusActive:
		return r, nil
	}
	return nil, fmt.Errorf("%w (%s)", ErrReservationEnded, r.Status)
}

// DecideCommit turns a hold into a debit of amount (the held amount when nil), allocated in
// burn order now: less than held returns the rest, more debits the extra (overage if no
// block covers it).
func (a *Account) DecideCommit(id string, amount *events.Credits, now time.Time) (events.ReservationCommitted, error) {
	r, err := a.activeReservation(id, now)
	if err != nil {
		return events.ReservationCommitted{}, err
	}
	amt := r.Amount
	if amount != nil {
		if *amount < 0 {
			return events.ReservationCommitted{}, &FieldError{"amount", "must not be negative"}
		}
		amt = *amount
	}
	// More than held debits the extra, without bound but this one: what the customer has
	// committed, and any debt the extra makes, must stay amounts allot can record (they
	// saturated, and a second huge commit's debt vanished).
	if amt > r.Amount && (addCredits(a.Committed, amt) == math.MaxInt64 || addCredits(a.Overage, amt) == math.MaxInt64) {
		return events.ReservationCommitted{}, &FieldError{"amount", fmt.Sprintf("is more than allot can record for this customer: its committed total or its debt would pass %s", events.Credits(math.MaxInt64))}
	}
	var allocs []events.Allocation
	if amt > 0 {
		allocs = a.Allocations(now.UTC(), amt)
	}
	return events.ReservationCommitted{Reservation: id, Customer: a.Customer, Amount: amt, Allocations: allocs, At: now.UTC()}, nil
}

// DecideRelease ends a hold without a debit.
func (a *Account) DecideRelease(id string, now time.Time) (events.ReservationReleased, error) {
	if _, err := a.activeReservation(id, now); err != nil {
		return events.ReservationReleased{}, err
	}
	return events.ReservationReleased{Reservation: id, Customer: a.Customer, At: now.UTC()}, nil
}
