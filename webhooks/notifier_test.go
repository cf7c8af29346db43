package webhooks

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/allot-dev/allot/events"
)

type endpointList []events.WebhookEndpoint

func (l endpointList) WebhookEndpoints(events.Scope) []events.WebhookEndpoint { return l }

func TestDeriveNotifications(t *testing.T) {
	thr := events.Credits(10 * events.MicroPerCredit)
	n := &Notifier{Endpoints: endpointList{
		{ID: "low", Events: []string{events.HookCreditsLow}, LowBalanceThreshold: &thr},
		{ID: "other", Events: []string{events.HookCreditsGranted}},
	}}
	sc := events.Scope{Product: "acme", Env: "live"}
	at := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	raw := func(v any) []byte { b, _ := json.Marshal(v); return b }
	types := func(ns []events.Notification) []string {
		var out []string
		for _, x := range ns {
			out = append(out, x.Type)
		}
		return out
	}
	cr := func(c int64) events.Credits { return events.Credits(c * events.MicroPerCredit) }

	got := n.derive(sc, "c", events.TypeCreditsGranted, raw(events.CreditsGranted{Block: "b", Amount: cr(50)}), 0, cr(50), at)
	assert.Equal(t, []string{events.HookCreditsGranted}, types(got))

	// Crossing the threshold (50 → 8) is low; staying below it (8 → 5) is not; reaching zero is depleted.
	got = n.derive(sc, "c", events.TypeUsageRated, nil, cr(50), cr(8), at)
	assert.Equal(t, []string{events.HookCreditsLow}, types(got))
	assert.Equal(t, "low", got[0].Endpoint, "per-endpoint thresholds go to their endpoint only")
	assert.Empty(t, n.derive(sc, "c", events.TypeUsageRated, nil, cr(8), cr(5), at))
	assert.Equal(t, []string{events.HookCreditsLow, events.HookCreditsDepleted}, types(n.derive(sc, "c", events.TypeUsageRated, nil, cr(11), cr(-1), at)))
	// Re-armed once the balance is back above the threshold.
	assert.Empty(t, n.derive(sc, "c", events.TypeCreditsGranted, raw(events.CreditsGranted{}), cr(5), cr(25), at)[1:])
	assert.Equal(t, []string{events.HookCreditsLow}, types(n.derive(sc, "c", events.TypeUsageRated, nil, cr(25), cr(9), at)))

	assert.Equal(t, []string{events.HookCreditsExpired}, types(n.derive(sc, "c", events.TypeCreditsExpired, raw(events.CreditsExpired{Block: "b", Amount: 1}), cr(20), cr(19), at)))
	assert.Equal(t, []string{events.HookReservationExpired}, types(n.derive(sc, "c", events.TypeReservationExpired, raw(events.ReservationReleased{Reservation: "r"}), cr(20), cr(20), at)))
	usage := cr(7)
	got = n.derive(sc, "c", events.TypeSubscriptionRenewed, raw(events.SubscriptionRenewed{Subscription: "s", Usage: &usage, Grant: events.Cycle{Index: 2, Amount: cr(100)}}), cr(20), cr(120), at)
	assert.Equal(t, []string{events.HookSubscriptionRenewed, events.HookCreditsGranted}, types(got), "the cycle's block is a grant like any other")
	assert.Equal(t, usage, got[0].Data["usage"], "postpaid renewals carry the cycle's usage")
	got = n.derive(sc, "c", events.TypeSubscriptionRenewed, raw(events.SubscriptionRenewed{Subscription: "s", Grant: events.Cycle{Index: 3, Block: "b3", Amount: cr(100), Rollover: cr(10), RollBlock: "r3"}}), cr(20), cr(130), at)
	assert.Equal(t, []string{events.HookSubscriptionRenewed, events.HookCreditsGranted, events.HookCreditsGranted}, types(got), "and so is a rollover")
	assert.Equal(t, events.SourceRollover, got[2].Data["source"])
	got = n.derive(sc, "c", events.TypeSubscriptionStarted, raw(events.SubscriptionStarted{Subscription: "s", Grant: events.Cycle{Block: "b0", Amount: cr(100)}}), cr(0), cr(100), at)
	assert.Equal(t, []string{events.HookCreditsGranted}, types(got), "starting a subscription grants its first cycle")
	assert.Equal(t, []string{events.HookSubscriptionCanceled}, types(n.derive(sc, "c", events.TypeSubscriptionCanceled, raw(events.SubscriptionCanceled{Subscription: "s"}), cr(20), cr(20), at)))
}
