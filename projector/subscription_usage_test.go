package projector

import (
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A postpaid cycle's usage summary is its usage net of credit-backs: volume tiers that lower
// the period's total as it grows credit the difference back, and the summary bills the total
// (50.50 here), not the debits alone (100).
func TestPostpaidSummaryNetsCreditBacks(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	plan := events.Plan{Key: "pp", Credits: 1000 * cr, Period: events.Period{Unit: events.UnitDay, Count: 1, TimeZone: "UTC"}, Mode: events.PlanPostpaid}
	a := newAccount("c")
	s, err := a.DecideSubscribe("sub", plan, t0, t0)
	require.NoError(t, err)
	fold(t, a, entry{events.TypeSubscriptionStarted, s},
		entry{events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: 1, LastSeq: 1, Debits: []events.UsageDebited{{ID: "d1", Kind: events.KindDebit, Customer: "c", Rule: "r", UsageSeq: 1, Amount: 100 * cr, EventTime: t0.Add(time.Hour)}}}},
		entry{events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: 2, LastSeq: 2, Debits: []events.UsageDebited{{ID: "d2", Kind: events.KindCreditBack, Customer: "c", Rule: "r", UsageSeq: 2, Amount: -49_500_000, EventTime: t0.Add(2 * time.Hour)}}}})
	r, err := a.DecideRenew("sub", s.Grant.End, true)
	require.NoError(t, err)
	require.NotNil(t, r.Usage)
	assert.Equal(t, events.Credits(50_500_000), *r.Usage)
	fold(t, a, entry{events.TypeSubscriptionRenewed, r})
	c, err := a.DecideCancel("sub", s.Grant.End.Add(time.Hour))
	require.NoError(t, err)
	assert.Equal(t, events.Credits(0), *c.Usage, "the next cycle starts from the net total")
}

// One postpaid subscription at a time per customer: each bills all of the customer's usage, so
// a second would bill 40 credits used as 80. After a cancel, a new one may start.
func TestOnePostpaidSubscriptionPerCustomer(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	plan := events.Plan{Key: "pp", Credits: 10 * cr, Period: events.Period{Unit: events.UnitDay, Count: 1, TimeZone: "UTC"}, Mode: events.PlanPostpaid}
	prepaid := events.Plan{Key: "pre", Credits: 10 * cr, Period: events.Period{Unit: events.UnitDay, Count: 1, TimeZone: "UTC"}, Mode: events.PlanPrepaid}
	a := newAccount("c")
	s1, err := a.DecideSubscribe("sub_1", plan, t0, t0)
	require.NoError(t, err)
	fold(t, a, entry{events.TypeSubscriptionStarted, s1})
	_, err = a.DecideSubscribe("sub_2", plan, t0, t0)
	assert.True(t, errors.Is(err, ErrPostpaidExists), "%v", err)
	_, err = a.DecideSubscribe("sub_3", prepaid, t0, t0)
	assert.NoError(t, err, "a prepaid plan alongside is fine")
	c, err := a.DecideCancel("sub_1", t0.Add(time.Hour))
	require.NoError(t, err)
	fold(t, a, entry{events.TypeSubscriptionCanceled, c})
	_, err = a.DecideSubscribe("sub_2", plan, t0.Add(time.Hour), t0.Add(time.Hour))
	assert.NoError(t, err, "after a cancel")
}
