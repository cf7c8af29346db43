package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A prepaid renewal later than the expirer's grace — the cycle's block already expired by its
// entry — still rolls the unused remainder over (it rolled over nothing).
func TestRolloverAfterTheCycleBlockExpired(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	half := events.MustDecimal("50")
	plan := events.Plan{Key: "pro", Credits: 100 * events.MicroPerCredit, Period: events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"},
		RolloverPercent: &half, Mode: events.PlanPrepaid}
	for _, expired := range []bool{false, true} {
		a := newAccount("c")
		started, err := a.DecideSubscribe("sub_1", plan, t0, t0)
		require.NoError(t, err)
		fold(t, a, entry{events.TypeSubscriptionStarted, started},
			entry{events.TypeUsageRated, events.UsageRated{Customer: "c", Debits: []events.UsageDebited{{Customer: "c", Rule: "r", UsageSeq: 1, Amount: 40 * events.MicroPerCredit, EventTime: t0.Add(time.Hour)}}}})
		end := started.Grant.End
		if expired {
			fold(t, a, entry{events.TypeCreditsExpired, events.CreditsExpired{Block: started.Grant.Block, Customer: "c", Amount: 60 * events.MicroPerCredit, At: end}})
		}
		renewed, err := a.DecideRenew("sub_1", end.Add(2*time.Hour), false)
		require.NoError(t, err)
		assert.Equal(t, events.Credits(30*events.MicroPerCredit), renewed.Grant.Rollover, "expired %v: half of the 60 left", expired)
	}
}
