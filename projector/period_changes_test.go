package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/allot-dev/allot/events"
)

// Two period changes in a row (day → week → month): the month's new window sums only the
// outermost kept windows inside it — the week, which carries Monday's use, not Monday's day
// window as well (it counted Monday twice).
func TestNestedPeriodChangesCountTwice(t *testing.T) {
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	week := events.Period{Unit: events.UnitWeek, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	month := events.Period{Unit: events.UnitMonth, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	qMonth := events.Quota{Key: "calls", Meter: "requests", Limit: events.MustDecimal("100"), Period: month}
	monday := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	a := newAccount("c1")
	use := func(p events.Period, at time.Time, n string) {
		a.applyIncrement(events.QuotaIncremented{Customer: "c1", At: at, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal(n), Period: p, At: at}}})
	}
	use(day, monday, "40")                   // daily quota
	use(week, monday.Add(time.Hour), "10")   // made weekly: the week starts with Monday's 40 → 50
	use(month, monday.Add(2*time.Hour), "1") // made monthly
	st := a.QuotaStatuses([]events.Quota{qMonth}, []events.Decimal{events.MustDecimal("1")}, monday.Add(3*time.Hour))
	assert.Equal(t, "51", st[0].Used.String(), "40 + 10 + 1 were used this month")
}
