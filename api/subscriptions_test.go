package api_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPlanValidation(t *testing.T) {
	h := newHarness(t)
	for _, tt := range []struct{ body, field string }{
		{`{"period":{"unit":"month"},"mode":"prepaid"}`, "credits"},
		{`{"credits":"0","period":{"unit":"month"},"mode":"prepaid"}`, "credits"},
		{`{"credits":"10","mode":"prepaid"}`, "period"},
		{`{"credits":"10","period":{"unit":"eon"},"mode":"prepaid"}`, "period.unit"},
		{`{"credits":"10","period":{"unit":"month","mode":"calendar"},"mode":"prepaid"}`, "period.mode"},
		{`{"credits":"10","period":{"unit":"month"}}`, "mode"},
		{`{"credits":"10","period":{"unit":"month"},"mode":"weekly"}`, "mode"},
		{`{"credits":"10","period":{"unit":"month"},"mode":"prepaid","rollover_percent":"101"}`, "rollover_percent"},
		{`{"credits":"10","period":{"unit":"month"},"mode":"prepaid","rollover_cap":"-1"}`, "rollover_cap"},
		{`{"credits":"10","period":{"unit":"month"},"mode":"prepaid","grace_seconds":10000000000}`, "grace_seconds"},
	} {
		r := h.do("PUT", "/v1/plans/p", keyAcme, jsonCT, tt.body)
		requireProblem(t, r, 422, "invalid-field")
		assert.Equal(t, tt.field, r.body["field"], tt.body)
	}
}

func TestSubscriptionLifecycle(t *testing.T) {
	h := newHarness(t)
	r := h.do("PUT", "/v1/plans/pro", keyAcme, jsonCT, `{"credits":"100","period":{"unit":"day"},"mode":"prepaid","rollover_percent":"50","rollover_cap":"30","grace_seconds":3600}`)
	require.Equal(t, 200, r.status, r.raw)
	requireProblem(t, h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, `{"customer":"c","plan":"nope"}`), 422, "invalid-field")

	// Started a day and a half ago: cycle 0 is over, so its block is no longer in the balance.
	start := time.Now().UTC().Add(-36 * time.Hour).Truncate(time.Second)
	r = h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, fmt.Sprintf(`{"customer":"c","plan":"pro","start":%q}`, start.Format(time.RFC3339)))
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["id"].(string)
	assert.EqualValues(t, 0, r.body["cycle"])
	assert.Equal(t, "lapsed", r.body["status"], "prepaid, not renewed within the grace period")

	// Renew: cycle 1 is granted, with half of cycle 0's unused 100, capped at 30.
	r = h.do("POST", "/v1/subscriptions/"+id+"/renew", keyAcme, jsonCT, ``)
	require.Equal(t, 200, r.status, r.raw)
	assert.EqualValues(t, 1, r.body["cycle"])
	assert.Equal(t, "active", r.body["status"])
	bal := h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	assert.Equal(t, "130", bal.body["balance"], "cycle 1's 100 plus a 30 rollover")
	// Retried renewals of the same cycle change nothing.
	for i := 0; i < 3; i++ {
		r = h.do("POST", "/v1/subscriptions/"+id+"/renew", keyAcme, jsonCT, `{}`)
		require.Equal(t, 200, r.status, r.raw)
		assert.EqualValues(t, 1, r.body["cycle"])
	}
	assert.Equal(t, "130", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["balance"])

	r = h.do("POST", "/v1/subscriptions/"+id+"/cancel", keyAcme, jsonCT, ``)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "canceled", r.body["status"])
	assert.Equal(t, "canceled", h.do("GET", "/v1/subscriptions/"+id, keyAcme, "", "").body["status"])
	requireProblem(t, h.do("GET", "/v1/subscriptions/"+id, keyGlobex, "", ""), 404, "not-found")

	// Top-ups go into a wallet block, which burns after the plan's.
	r = h.do("POST", "/v1/customers/c/topups", keyAcme, jsonCT, `{"amount":"50","cost_basis":"0.01"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "wallet", r.body["source"])
	bal = h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	assert.Equal(t, "180", bal.body["balance"])
	blocks := bal.body["blocks"].([]any)
	assert.Equal(t, "wallet", blocks[len(blocks)-1].(map[string]any)["source"], "the wallet burns last")
}
