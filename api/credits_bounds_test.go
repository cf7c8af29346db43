package api_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
)

// Credits are int64 micro-credits. Two grants of 5,000,000,000,000 summed past the end and
// showed a negative balance (and a 1-credit hold was refused): a grant that would take a
// customer's credits past 9,223,372,036,854.775807 is a 400 naming amount, and what is there
// keeps its sign.
func TestGrantsPastTheLargestAmountAreRefused(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/big/grants", keyAcme, jsonCT, `{"amount":"5000000000000","source":"wallet"}`).status)
	r := h.do("POST", "/v1/customers/big/grants", keyAcme, jsonCT, `{"amount":"5000000000000","source":"promo"}`)
	assert.Equal(t, 400, r.status, r.raw)
	assert.Equal(t, "amount", r.body["field"], r.raw)
	bal := h.do("GET", "/v1/customers/big/balance", keyAcme, "", "")
	assert.Equal(t, "5000000000000", bal.body["balance"], bal.raw)
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"big","amount":"1"}`)
	assert.Equal(t, 201, r.status, r.raw)
}

// Committing more than held debits the extra, but not past what allot can record: two
// commits of the largest amount were both taken, the second's debt vanished into a saturated
// overage, and the effective balance wrapped to a huge positive that let a 1,000,000 hold in.
func TestOverCommitPastTheLargestAmountIsRefused(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/w/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`).status)
	hold := func(amount string) string {
		r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"w","amount":"`+amount+`"}`)
		require.Equal(t, 201, r.status, r.raw)
		return r.body["id"].(string)
	}
	hold("5")
	a, b := hold("1"), hold("1")
	r := h.do("POST", "/v1/reservations/"+a+"/commit", keyAcme, jsonCT, `{"amount":"9223372036854.775807"}`)
	assert.Equal(t, 400, r.status, r.raw)
	assert.Equal(t, "amount", r.body["field"], r.raw)
	r = h.do("POST", "/v1/reservations/"+a+"/commit", keyAcme, jsonCT, `{"amount":"1000000"}`)
	require.Equal(t, 200, r.status, "an over-commit allot can record: %s", r.raw)
	r = h.do("POST", "/v1/reservations/"+b+"/commit", keyAcme, jsonCT, `{"amount":"9223372036854.775807"}`)
	assert.Equal(t, 400, r.status, r.raw)
	bal := h.do("GET", "/v1/customers/w/balance", keyAcme, "", "")
	assert.Equal(t, "-999990", bal.body["balance"], bal.raw)
	assert.Equal(t, "-999996", bal.body["effective_balance"], "balance less the holds of 5 and 1: %s", bal.raw)
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"w","amount":"1000000"}`)
	assert.Equal(t, 409, r.status, r.raw)
}

// The entitlement check's effective_balance − estimated_cost saturates: a customer 2 credits
// in debt asking for the largest quantity was allowed (the difference wrapped positive).
func TestEntitlementCheckDoesNotWrap(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("PUT", "/v1/rules/tok", keyAcme, jsonCT, `{"meter":"tokens","model":"per_unit","price":"1","effective_from":"2020-01-01T00:00:00Z"}`).status)
	require.Equal(t, 200, h.do("PUT", "/v1/features/chat", keyAcme, jsonCT, `{"rule":"tok"}`).status)
	require.Equal(t, 201, h.do("POST", "/v1/customers/d/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`).status)
	r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"d","amount":"1"}`)
	require.Equal(t, 201, r.status, r.raw)
	require.Equal(t, 200, h.do("POST", "/v1/reservations/"+r.body["id"].(string)+"/commit", keyAcme, jsonCT, `{"amount":"3"}`).status)
	for _, q := range []string{"1", "9223372036854.775807"} {
		r = h.do("POST", "/v1/entitlements/check", keyAcme, jsonCT, `{"customer":"d","feature":"chat","quantity":"`+q+`"}`)
		require.Equal(t, 200, r.status, r.raw)
		assert.Equal(t, false, r.body["allowed"], "quantity %s: %s", q, r.raw)
	}
}

// A time past year 9999 in UTC cannot be written into a ledger entry: it is a 400 naming the
// field, not a retryable 503 a client would retry for ever.
func TestTimesPastYear9999AreBadInput(t *testing.T) {
	h := newHarness(t)
	for field, body := range map[string]string{
		"expires_at":   `{"amount":"5","source":"wallet","expires_at":"9999-12-31T23:00:00-05:00"}`,
		"effective_at": `{"amount":"5","source":"wallet","effective_at":"9999-12-31T23:00:00-05:00"}`,
	} {
		r := h.do("POST", "/v1/customers/y/grants", keyAcme, jsonCT, body)
		assert.Equal(t, 400, r.status, r.raw)
		assert.Equal(t, field, r.body["field"], r.raw)
	}
	r := h.do("PUT", "/v1/quotas/far", keyAcme, jsonCT, `{"meter":"requests","limit":1,"period":{"unit":"day","mode":"fixed","anchor":"9999-12-31T23:00:00-05:00"}}`)
	assert.Equal(t, "period.anchor", r.body["field"], r.raw)
}

// A hold counts only credits that last as long as it does: 10 promo credits expiring in a
// minute do not fund a 5-minute hold of 10 (at the promo's expiry the hold would be more than
// the balance, and its commit went into overage), but fund a 30-second one; a block granted
// ahead, effective when the promo ends, funds the long hold from then on.
func TestHoldCountsOnlyCreditsThatOutlastIt(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() } })
	require.Equal(t, 201, h.do("POST", "/v1/customers/o/grants", keyAcme, jsonCT, `{"amount":"10","source":"promo","expires_at":"2030-01-01T00:01:00Z"}`).status)
	r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"o","amount":"10","ttl_seconds":300}`)
	assert.Equal(t, 409, r.status, r.raw)
	assert.Contains(t, r.body["detail"], "lasts the hold", r.raw)

	short := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"o","amount":"10","ttl_seconds":30}`)
	require.Equal(t, 201, short.status, short.raw)
	require.Equal(t, 200, h.do("POST", "/v1/reservations/"+short.body["id"].(string)+"/release", keyAcme, jsonCT, `{}`).status)

	require.Equal(t, 201, h.do("POST", "/v1/customers/o/grants", keyAcme, jsonCT, `{"amount":"10","source":"plan","effective_at":"2030-01-01T00:01:00Z"}`).status)
	long := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"o","amount":"10","ttl_seconds":300}`)
	require.Equal(t, 201, long.status, long.raw)
	clock.Store(t0.Add(2 * time.Minute).UnixNano())
	r = h.do("POST", "/v1/reservations/"+long.body["id"].(string)+"/commit", keyAcme, jsonCT, `{}`)
	require.Equal(t, 200, r.status, r.raw)
	bal := h.do("GET", "/v1/customers/o/balance", keyAcme, "", "")
	assert.Equal(t, "0", bal.body["overage"], "the commit found the credits the hold counted on: %s", bal.raw)
	assert.Equal(t, "0", bal.body["balance"], bal.raw)
}
