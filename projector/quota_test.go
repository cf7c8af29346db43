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
