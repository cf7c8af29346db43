package api_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
)

// DESIGN.md, Reservations: "Concurrent reservations never hold more than the balance";
// Entitlement check: "only a reservation guarantees funds under concurrency".
//
// A long hold is admitted on the promo credits that outlast the plan block (the plan expires
// in 10 minutes, the hold lasts 30). A second, short hold of 95 would fit the effective balance
// (100), but its commit burns in burn order — promo (priority 10) before plan (priority 20) — so
// it would eat the very credits the long hold was admitted on, and the long hold's commit after
// the plan expired would be overage. It is refused (found in review).
func TestAShortHoldMayNotSpendWhatALongHoldWasAdmittedOn(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() } })
	require.Equal(t, 201, h.do("POST", "/v1/customers/lh/grants", keyAcme, jsonCT, `{"amount":"10","source":"promo","expires_at":"2031-01-01T00:00:00Z"}`).status)
	require.Equal(t, 201, h.do("POST", "/v1/customers/lh/grants", keyAcme, jsonCT, `{"amount":"100","source":"plan","expires_at":"2030-01-01T00:10:00Z"}`).status)

	long := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"lh","amount":"10","ttl_seconds":1800}`)
	require.Equal(t, 201, long.status, "the promo's 10 outlast the plan block: %s", long.raw)

	clock.Store(t0.Add(time.Minute).UnixNano())
	short := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"lh","amount":"95","ttl_seconds":300}`)
	requireProblem(t, short, 409, "insufficient-credits")
	// Any commit burns the promo first, so no short hold fits; usage still may (it is not
	// guaranteed funds): a hold that lasts as long as the long one does not burn before it.
	same := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"lh","amount":"5","ttl_seconds":1740}`)
	requireProblem(t, same, 409, "insufficient-credits") // the promo is all the long hold's

	clock.Store(t0.Add(11 * time.Minute).UnixNano())
	bal := h.do("GET", "/v1/customers/lh/balance", keyAcme, "", "")
	assert.Equal(t, "10", bal.body["reserved"], bal.raw)
	var r reply
	assert.False(t, bal.body["effective_balance"].(string)[0] == '-', "holds are more than the balance: %s", bal.raw)

	r = h.do("POST", "/v1/reservations/"+long.body["id"].(string)+"/commit", keyAcme, jsonCT, `{}`)
	require.Equal(t, 200, r.status, r.raw)
	bal = h.do("GET", "/v1/customers/lh/balance", keyAcme, "", "")
	assert.Equal(t, "0", bal.body["overage"], "the long hold's commit found no credits: %s", bal.raw)
}
