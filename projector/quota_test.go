package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// Uses dated in the windows ahead — as far ahead as ingest lets an event be — never push the
// current window out: forgetting by count alone, four of them reset a used-up minute to zero.
// Once an event proves the clock has passed a window, that window may go.
func TestFutureDatedUsesKeepTheCurrentWindow(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 0, 30, 0, time.UTC)
	minute := events.Period{Unit: events.UnitMinute, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	q := events.Quota{Key: "calls", Meter: "requests", Limit: events.MustDecimal("5"), Period: minute}
	a := newAccount("c1")
	seq := uint64(0)
	use := func(at time.Time, n string) {
		seq++
		a.applyQuotaUse(events.QuotaUse{Quota: "calls", Amount: events.MustDecimal(n), Period: minute, At: at, UsageSeq: seq})
	}
	used := func() string {
		st := a.QuotaStatuses([]events.Quota{q}, []events.Decimal{events.MustDecimal("1")}, now)
		require.Len(t, st, 1)
		return st[0].Used.String()
	}
	use(now, "5")
	for m := 1; m <= 4; m++ {
		use(now.Add(time.Duration(m)*time.Minute), "1")
	}
	assert.Equal(t, "5", used(), "the current minute is still used up")
	_, _, err := a.DecideIncrement([]events.Quota{q}, []events.Decimal{events.MustDecimal("1")}, now)
	assert.ErrorIs(t, err, ErrQuotaExceeded)
	assert.Len(t, a.Quotas["calls"].Windows, 5, "every window that may not have ended is kept")

	// An event at 12:10 means the clock is past 12:05: the windows ended by then may go, down
	// to the three kept for late events.
	use(now.Add(10*time.Minute), "1")
	w := a.Quotas["calls"].Windows
	require.Len(t, w, 3)
	assert.Equal(t, now.Add(3*time.Minute).Truncate(time.Minute), w[0].Start)
}

// A first_use period is anchored by the first counted use: not by a reset or by taking use
// away, which happen to a customer who has used nothing (the window then started at the
// reset, so the customer's first real day was cut short).
func TestFirstUseAnchorIsTheFirstCountedUse(t *testing.T) {
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeFirstUse, TimeZone: "UTC"}
	q := events.Quota{Key: "calls", Meter: "requests", Limit: events.MustDecimal("5"), Period: day}
	reset := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	first := time.Date(2026, 5, 2, 16, 0, 0, 0, time.UTC)
	a := newAccount("c1")
	fold(t, a, entry{events.TypeQuotaReset, events.QuotaReset{Customer: "c1", Quota: "calls", Period: day, At: reset}},
		entry{events.TypeQuotaAdjusted, events.QuotaAdjusted{Customer: "c1", Quota: "calls", Period: day, Amount: events.MustDecimal("-2"), At: reset}})
	if qs := a.Quotas["calls"]; qs != nil {
		assert.Nil(t, qs.Anchor, "neither a reset nor a negative adjustment anchors the period")
	}
	_, st, err := a.DecideIncrement([]events.Quota{q}, []events.Decimal{events.MustDecimal("1")}, first)
	require.NoError(t, err)
	fold(t, a, entry{events.TypeQuotaIncremented, events.QuotaIncremented{Customer: "c1", At: first, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal("1"), Period: day, At: first}}}})
	require.NotNil(t, a.Quotas["calls"].Anchor)
	assert.Equal(t, first, *a.Quotas["calls"].Anchor)
	assert.Equal(t, first, st[0].WindowStart)
	assert.Equal(t, first.Add(24*time.Hour), st[0].ResetsAt)

	// Adding use is use: it anchors a customer's period too.
	b := newAccount("c2")
	fold(t, b, entry{events.TypeQuotaAdjusted, events.QuotaAdjusted{Customer: "c2", Quota: "calls", Period: day, Amount: events.MustDecimal("2"), At: reset}})
	require.NotNil(t, b.Quotas["calls"].Anchor)
	assert.Equal(t, reset, *b.Quotas["calls"].Anchor)
}

// A usage entry carrying a negative quota use (rating wrote them for negative sums) counts
// nothing: the window's use never goes below zero nor admits past its limit.
func TestNegativeUsageCountsNothing(t *testing.T) {
	month := events.Period{Unit: events.UnitMonth, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	q := events.Quota{Key: "tok", Meter: "tokens", Limit: events.MustDecimal("1000"), Period: month}
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	a := newAccount("c")
	a.applyQuotaUse(events.QuotaUse{Quota: "tok", Amount: events.MustDecimal("-5000"), Period: month, At: now, UsageSeq: 1})
	a.applyQuotaUse(events.QuotaUse{Quota: "tok", Amount: events.MustDecimal("300"), Period: month, At: now, UsageSeq: 2})
	st := a.QuotaStatuses([]events.Quota{q}, []events.Decimal{events.MustDecimal("1000")}, now)
	assert.Equal(t, "300", st[0].Used.String())
	assert.Equal(t, "700", st[0].Remaining.String())
	_, _, err := a.DecideIncrement([]events.Quota{q}, []events.Decimal{events.MustDecimal("1000")}, now)
	assert.ErrorIs(t, err, ErrQuotaExceeded)
}

// A quota's period changed while windows exist: the new window starts with what the kept
// windows inside it used (a daily quota made weekly on a Tuesday has this week's Monday and
// Tuesday), whichever day the change is made, before and after its first use; a reset clears
// it; and a window of the old period that starts at the same instant is never taken for it
// (the week took Monday's day window alone, and dropped Tuesday's).
func TestPeriodChangeCarriesTheUseInside(t *testing.T) {
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	week := events.Period{Unit: events.UnitWeek, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	qWeek := events.Quota{Key: "calls", Meter: "requests", Limit: events.MustDecimal("100"), Period: week}
	qDay := events.Quota{Key: "calls", Meter: "requests", Limit: events.MustDecimal("100"), Period: day}
	monday := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	tuesday := monday.Add(24 * time.Hour)
	a := newAccount("c1")
	use := func(p events.Period, at time.Time, n string) {
		a.applyIncrement(events.QuotaIncremented{Customer: "c1", At: at, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal(n), Period: p, At: at}}})
	}
	used := func(q events.Quota, at time.Time) string {
		return a.QuotaStatuses([]events.Quota{q}, []events.Decimal{events.MustDecimal("1")}, at)[0].Used.String()
	}
	use(day, monday, "40")
	use(day, tuesday, "50")
	assert.Equal(t, "90", used(qWeek, tuesday.Add(time.Hour)), "this week: 40 on Monday and 50 on Tuesday")
	use(week, tuesday.Add(time.Hour), "5")
	assert.Equal(t, "95", used(qWeek, tuesday.Add(2*time.Hour)))
	_, _, err := a.DecideIncrement([]events.Quota{qWeek}, []events.Decimal{events.MustDecimal("6")}, tuesday.Add(2*time.Hour))
	assert.ErrorIs(t, err, ErrQuotaExceeded, "95 + 6 > 100")
	assert.Equal(t, "50", used(qDay, tuesday.Add(2*time.Hour)), "Tuesday's day window is its own")

	// A reset of the week after the change clears what it carries.
	b := newAccount("c2")
	b.applyIncrement(events.QuotaIncremented{Customer: "c2", At: monday, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal("40"), Period: day, At: monday}}})
	b.applyReset(events.QuotaReset{Customer: "c2", Quota: "calls", Period: week, At: tuesday})
	assert.Equal(t, "0", b.QuotaStatuses([]events.Quota{qWeek}, []events.Decimal{events.MustDecimal("1")}, tuesday)[0].Used.String())
}
