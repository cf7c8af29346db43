package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A monthly plan started on Jan 31 renews at each month's end (Feb 29 in a leap year, Mar 31,
// Apr 30: DESIGN.md's month-end rule), not before, and is past_due within its grace and lapsed
// after it.
func TestAMonthlyPlanRenewsAtMonthEnds(t *testing.T) {
	start := time.Date(2024, 1, 31, 10, 0, 0, 0, time.UTC)
	p, err := events.Period{Unit: events.UnitMonth}.Normalize()
	require.NoError(t, err)
	p.Mode = ""
	plan := events.Plan{Key: "m", Credits: 100 * cr, Period: p, Mode: events.PlanPrepaid, GraceSeconds: 3600}
	a := newAccount("c")
	s, err := a.DecideSubscribe("s", plan, start, start)
	require.NoError(t, err)
	fold(t, a, entry{events.TypeSubscriptionStarted, s})
	assert.Equal(t, time.Date(2024, 2, 29, 10, 0, 0, 0, time.UTC), s.Grant.End)
	_, err = a.DecideRenew("s", time.Date(2024, 2, 29, 9, 59, 59, 0, time.UTC), false)
	assert.ErrorIs(t, err, ErrAlreadyRenewed)
	assert.Equal(t, SubPastDue, a.Subscriptions["s"].StatusAt(time.Date(2024, 2, 29, 10, 30, 0, 0, time.UTC)))
	assert.Equal(t, SubLapsed, a.Subscriptions["s"].StatusAt(time.Date(2024, 2, 29, 11, 0, 0, 0, time.UTC)))
	r, err := a.DecideRenew("s", time.Date(2024, 2, 29, 10, 30, 0, 0, time.UTC), false)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2024, 3, 31, 10, 0, 0, 0, time.UTC), r.Grant.End)
	fold(t, a, entry{events.TypeSubscriptionRenewed, r})
	r, err = a.DecideRenew("s", time.Date(2024, 3, 31, 10, 0, 0, 0, time.UTC), false)
	require.NoError(t, err)
	assert.Equal(t, time.Date(2024, 4, 30, 10, 0, 0, 0, time.UTC), r.Grant.End)
}

// A subscription id used again (its Idempotency-Key reused after its record expired) is
// ErrSubscriptionExists, which the API answers 422 idempotency-key-reused; it was
// ErrAlreadyRenewed, which had no answer of its own: a 503 "try again" that never passed.
func TestSubscribingAnExistingIDIsErrSubscriptionExists(t *testing.T) {
	start := time.Date(2024, 1, 31, 10, 0, 0, 0, time.UTC)
	a, plan := subscribedTo(t, events.UnitMonth, start)
	_, err := a.DecideSubscribe("s", plan, start.Add(48*time.Hour), start.Add(48*time.Hour))
	require.ErrorIs(t, err, ErrSubscriptionExists)
	require.NotErrorIs(t, err, ErrAlreadyRenewed)
}

// A renewal whose cycle would end past year 9999 is ErrSubscriptionEnds (the API's 409
// subscription-ended), not an entry that cannot be written.
func TestARenewalPastYear9999IsErrSubscriptionEnds(t *testing.T) {
	start := time.Date(9999, 12, 30, 12, 0, 0, 0, time.UTC)
	a, plan := subscribedTo(t, events.UnitDay, start)
	_, err := a.DecideRenew("s", start.Add(25*time.Hour), false)
	require.ErrorIs(t, err, ErrSubscriptionEnds)
	_, err = a.DecideSubscribe("s2", plan, start.Add(24*time.Hour), start)
	var fe *FieldError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, "start", fe.Field)
}

// subscribedTo is an account subscribed (as "s") at start to a prepaid plan of one unit.
func subscribedTo(t *testing.T, unit string, start time.Time) (*Account, events.Plan) {
	t.Helper()
	p, err := events.Period{Unit: unit}.Normalize()
	require.NoError(t, err)
	plan := events.Plan{Key: "p", Credits: 100 * cr, Period: p, Mode: events.PlanPrepaid}
	a := newAccount("c")
	s, err := a.DecideSubscribe("s", plan, start, start)
	require.NoError(t, err)
	fold(t, a, entry{events.TypeSubscriptionStarted, s})
	return a, plan
}
