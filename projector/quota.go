package projector

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/allot-dev/allot/events"
)

// QuotaWindow is the use of one quota in one window [Start, End).
type QuotaWindow struct {
	Start time.Time      `json:"start"`
	End   time.Time      `json:"end"`
	Used  events.Decimal `json:"used"`
}

// QuotaState is one customer's use of one quota: the recent windows, and for first_use
// periods the anchor (the first counted use).
type QuotaState struct {
	Anchor   *time.Time    `json:"anchor,omitempty"`
	Windows  []QuotaWindow `json:"windows"` // ascending: the newest maxQuotaWindows, and any that may not have ended
	UsageSeq uint64        `json:"usage_seq,omitempty"`
}

const maxQuotaWindows = 3

// window returns the window of p holding at. With create, a first_use period without an
// anchor takes at as its anchor; without, it answers as if at were the first use.
func (q *QuotaState) window(p events.Period, at time.Time, create bool) (start, end time.Time) {
	switch p.Mode {
	case events.ModeFirstUse:
		anchor := at
		if q.Anchor != nil {
			anchor = *q.Anchor
		} else if create {
			a := at
			q.Anchor = &a
		}
		return p.Window(anchor, at)
	default:
		return p.WindowAt(at)
	}
}

// unanchorIfUnused forgets a first_use anchor when every use since it was given back — the
// gateway's give-back of a request whose answer did not count (a 5xx) — so that the first use
// that does count anchors the windows. Only while the anchor's own window is still kept: once
// older windows are forgotten, uses before the kept ones may have counted.
func (q *QuotaState) unanchorIfUnused() {
	if q == nil || q.Anchor == nil || len(q.Windows) == 0 || !q.Windows[0].Start.Equal(*q.Anchor) {
		return
	}
	for _, w := range q.Windows {
		if w.Used.Sign() != 0 {
			return
		}
	}
	q.Anchor, q.Windows = nil, nil
}

// use returns the window at [start, end), created if need be with what the kept windows
// inside it used (see usedIn).
//
// Beyond maxQuotaWindows the oldest windows are forgotten, but only those that have surely
// ended: no event is dated more than events.MaxFutureSkew ahead of the clock, so the clock is
// at least the newest window's start minus that skew, and a window ending before it is over.
// (Forgetting by count alone, a few uses dated in windows ahead pushed the current window out
// and its count back to zero.) The fold stays deterministic: it compares event times only.
func (q *QuotaState) use(start, end time.Time) *QuotaWindow {
	i, found := slices.BinarySearchFunc(q.Windows, start, func(w QuotaWindow, t time.Time) int {
		if c := w.Start.Compare(t); c != 0 {
			return c
		}
		return w.End.Compare(end)
	})
	if !found {
		q.Windows = slices.Insert(q.Windows, i, QuotaWindow{Start: start, End: end, Used: q.usedIn(start, end)})
		ended := q.Windows[len(q.Windows)-1].Start.Add(-events.MaxFutureSkew)
		drop := 0
		for len(q.Windows)-drop > maxQuotaWindows && !q.Windows[drop].End.After(ended) {
			drop++
		}
		if drop > 0 {
			q.Windows = q.Windows[drop:]
			if i -= drop; i < 0 { // older than every kept window: nothing to count it against any more
				return &QuotaWindow{Start: start, End: end}
			}
		}
	}
	return &q.Windows[i]
}

// usedIn is what the window [start, end) has used: the window's own count when it is kept, and
// otherwise what the kept windows inside it used. Windows of one period tile time, so only
// windows of another period — the quota's before a change of its period — can lie inside
// another: a daily quota made weekly on a Tuesday starts the week with Monday's and Tuesday's
// use (a window partly outside, as a month's in a new week, counts nothing: it cannot be
// split). Windows are matched by start and end alike, so one of another period that starts at
// the same instant is never taken for this one.
func (q *QuotaState) usedIn(start, end time.Time) events.Decimal {
	var sum events.Decimal
	inside := func(w QuotaWindow, s, e time.Time) bool { return !w.Start.Before(s) && !w.End.After(e) }
	for i, w := range q.Windows {
		if w.Start.Equal(start) && w.End.Equal(end) {
			return w.Used
		}
		if !inside(w, start, end) {
			continue
		}
		// Only the outermost: a window made by an earlier change of period already carries
		// the ones inside it (day → week → month must not count the days twice).
		nested := false
		for j, o := range q.Windows {
			if j != i && inside(o, start, end) && inside(w, o.Start, o.End) && !(o.Start.Equal(w.Start) && o.End.Equal(w.End)) {
				nested = true
				break
			}
		}
		if !nested {
			sum = sum.Add(w.Used)
		}
	}
	return sum
}

// holdsInside reports whether a kept window lies inside [start, end) without being it.
func (q *QuotaState) holdsInside(start, end time.Time) bool {
	for _, w := range q.Windows {
		if !w.Start.Before(start) && !w.End.After(end) && !(w.Start.Equal(start) && w.End.Equal(end)) {
			return true
		}
	}
	return false
}

// Used is what the window holding at has used.
func (q *QuotaState) Used(p events.Period, at time.Time) (used events.Decimal, start, end time.Time) {
	if q == nil {
		q = &QuotaState{}
	}
	start, end = q.window(p, at, false)
	return q.usedIn(start, end), start, end
}

func (a *Account) quota(key string) *QuotaState {
	if a.Quotas == nil {
		a.Quotas = map[string]*QuotaState{}
	}
	q := a.Quotas[key]
	if q == nil {
		q = &QuotaState{}
		a.Quotas[key] = q
	}
	return q
}

// CountLands reports whether a use of quota key (under period p) dated at would be counted in a
// window this account keeps. One dated before every kept window, when as many as are kept
// already exist, is counted nowhere (the window is forgotten as it is made), so an adjustment
// dated there would change nothing.
func (a *Account) CountLands(key string, p events.Period, at time.Time) bool {
	q := a.Quotas[key]
	if q == nil || len(q.Windows) < maxQuotaWindows {
		return true
	}
	c := QuotaState{Anchor: q.Anchor, Windows: slices.Clone(q.Windows)}
	start, end := c.window(p, at.UTC(), false)
	w := c.use(start, end)
	for i := range c.Windows {
		if w == &c.Windows[i] {
			return true
		}
	}
	return false
}

// quotaWindowAt is the customer's window of quota key, under period p, that holds at. With
// count, at is a counted use: the window is created if need be and a first_use period without
// an anchor takes at as its anchor. Without, only an existing window is returned (or nil):
// a reset or a negative adjustment is not a use, and must not anchor a first_use period.
func (a *Account) quotaWindowAt(key string, p events.Period, at time.Time, count bool) *QuotaWindow {
	if !count {
		q := a.Quotas[key]
		if q == nil || (p.Mode == events.ModeFirstUse && q.Anchor == nil) {
			return nil
		}
		start, end := q.window(p, at.UTC(), false)
		for i := range q.Windows {
			if q.Windows[i].Start.Equal(start) && q.Windows[i].End.Equal(end) {
				return &q.Windows[i]
			}
		}
		if q.holdsInside(start, end) {
			return q.use(start, end) // what it holds (usedIn) is what a reset or give-back changes
		}
		return nil
	}
	q := a.quota(key)
	return q.use(q.window(p, at.UTC(), true))
}

// applyQuotaUse counts one use; rating's uses are applied once by usage position.
func (a *Account) applyQuotaUse(u events.QuotaUse) bool {
	q := a.quota(u.Quota)
	if u.UsageSeq != 0 {
		if u.UsageSeq <= q.UsageSeq {
			return false
		}
		q.UsageSeq = u.UsageSeq
		if u.Amount.Sign() <= 0 {
			return true // counts nothing (rating writes none since; an older entry's stays out)
		}
	}
	start, end := q.window(u.Period, u.At.UTC(), true)
	w := q.use(start, end)
	w.Used = w.Used.Add(u.Amount)
	return true
}

// QuotaStatus is a quota's window for a customer at a moment.
type QuotaStatus struct {
	Quota       string         `json:"quota"`
	Allowed     bool           `json:"allowed"`
	Used        events.Decimal `json:"used"`
	Limit       events.Decimal `json:"limit"`
	Remaining   events.Decimal `json:"remaining"`
	Requested   events.Decimal `json:"requested"`
	WindowStart time.Time      `json:"window_start"`
	ResetsAt    time.Time      `json:"resets_at"`
}

// Quota decisions the state can refuse.
var (
	ErrQuotaExceeded   = errors.New("quota exceeded")
	ErrWeightOverLimit = errors.New("weight exceeds the whole limit")
)

// QuotaError carries the status of every quota of a refused decision.
type QuotaError struct {
	Err      error
	Statuses []QuotaStatus
}

func (e *QuotaError) Error() string { return e.Err.Error() }
func (e *QuotaError) Unwrap() error { return e.Err }

// QuotaStatuses evaluates amounts against quotas at now, changing nothing (check).
func (a *Account) QuotaStatuses(quotas []events.Quota, amounts []events.Decimal, now time.Time) []QuotaStatus {
	return a.AppendQuotaStatuses(make([]QuotaStatus, 0, len(quotas)), quotas, amounts, now)
}

// AppendQuotaStatuses is QuotaStatuses appending to out (a caller's array on the stack, for a
// check that runs on every request).
func (a *Account) AppendQuotaStatuses(out []QuotaStatus, quotas []events.Quota, amounts []events.Decimal, now time.Time) []QuotaStatus {
	base := len(out)
	out = slices.Grow(out, len(quotas))[:base+len(quotas)]
	for i, qt := range quotas {
		used, start, end := a.Quotas[qt.Key].Used(qt.Period, now)
		limit := qt.LimitFor(a.Customer)
		rem := limit.Sub(used)
		if rem.Sign() < 0 {
			rem = events.Decimal{}
		}
		out[base+i] = QuotaStatus{Quota: qt.Key, Used: used, Limit: limit, Remaining: rem, Requested: amounts[i],
			WindowStart: start, ResetsAt: end, Allowed: used.Add(amounts[i]).Cmp(limit) <= 0}
	}
	return out
}

// DecideIncrement admits amounts against quotas all or nothing: allowed iff used + amount <=
// limit for every quota; otherwise nothing changes. An amount larger than a whole limit can
// never be admitted and is refused as such.
func (a *Account) DecideIncrement(quotas []events.Quota, amounts []events.Decimal, now time.Time) (events.QuotaIncremented, []QuotaStatus, error) {
	for i, qt := range quotas {
		if amounts[i].Sign() <= 0 {
			return events.QuotaIncremented{}, nil, &FieldError{"amount", "must be greater than 0"}
		}
		if amounts[i].Cmp(qt.LimitFor(a.Customer)) > 0 {
			st := a.QuotaStatuses(quotas, amounts, now)
			return events.QuotaIncremented{}, st, &QuotaError{fmt.Errorf("%w: %s > %s (%s)", ErrWeightOverLimit, amounts[i], qt.LimitFor(a.Customer), qt.Key), st}
		}
	}
	st := a.QuotaStatuses(quotas, amounts, now)
	for _, s := range st {
		if !s.Allowed {
			return events.QuotaIncremented{}, st, &QuotaError{ErrQuotaExceeded, st}
		}
	}
	e := events.QuotaIncremented{Customer: a.Customer, At: now.UTC()}
	for i, qt := range quotas {
		e.Items = append(e.Items, events.QuotaUse{Quota: qt.Key, Amount: amounts[i], Period: qt.Period, At: now.UTC()})
		st[i].Used = st[i].Used.Add(amounts[i])
		st[i].Remaining = st[i].Remaining.Sub(amounts[i])
	}
	return e, st, nil
}
