package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// Usage of the new cycle rated in its first minute burns the new cycle's plan block: postpaid
// renewals happen at the cycle's end (renewing a grace later left that usage without a block,
// as overage, and the block full).
func TestPostpaidNewCycleUsageInGraceBecomesOverage(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e := newSubEnv(t, t0)
	plan := events.Plan{Key: "pp", Credits: 100 * events.MicroPerCredit, Period: events.Period{Unit: events.UnitDay, Count: 1}, Mode: events.PlanPostpaid}
	e.write(events.TypeSubscriptionStarted, func(a *Account) (any, error) { return a.DecideSubscribe("sub_1", plan, t0, t0) })
	end := t0.Add(24 * time.Hour)
	go e.x.Run(e.ctx)
	e.set(end.Add(5 * time.Second))
	time.Sleep(200 * time.Millisecond)
	// usage dated 10 s into cycle 1, priced at once
	e.write(events.TypeUsageRated, func(*Account) (any, error) {
		return events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{{Customer: "c1", Rule: "r", UsageSeq: 1, Amount: 50 * events.MicroPerCredit, EventTime: end.Add(10 * time.Second)}}}, nil
	})
	e.set(end.Add(2 * time.Minute))
	require.Eventually(t, func() bool { return e.acct().Subscriptions["sub_1"].Cycle == 1 }, 5*time.Second, 10*time.Millisecond)
	a := e.acct()
	assert.Equal(t, events.Credits(0), a.Overage, "cycle 1's plan block (100) covers a 50 debit dated in cycle 1")
	assert.Equal(t, events.Credits(50*events.MicroPerCredit), a.block(CycleBlock("sub_1", 1, false)).Granted-a.block(CycleBlock("sub_1", 1, false)).Remaining, "cycle 1's block burned")
}
