package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A per-customer override applies whichever of the customer's ids it is keyed by — its own or
// allot's UUID — as customers are addressed everywhere; naming one customer by both is a 422 naming the field.
func TestQuotaOverrideByEitherID(t *testing.T) {
	h := newHarness(t)
	uuid := events.CustomerID(events.Scope{Product: "acme", Env: "test"}, "c1")
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT,
		`{"meter":"requests","limit":100,"period":{"unit":"hour"},"overrides":{"`+uuid+`":"1","c2":"2"}}`).status)
	r := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c1"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "1", r.body["limit"], "the override keyed by c1's UUID")
	r = h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"`+uuid+`"}`)
	assert.Equal(t, 429, r.status, r.raw)
	r = h.do("POST", "/v1/quotas/api/check", keyAcme, jsonCT, `{"customer":"c2"}`)
	assert.Equal(t, "2", r.body["limit"], "the override keyed by c2's own id")
	r = h.do("POST", "/v1/quotas/api/check", keyAcme, jsonCT, `{"customer":"c3"}`)
	assert.Equal(t, "100", r.body["limit"], "no override: the quota's limit")

	r = h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT,
		`{"meter":"requests","limit":100,"period":{"unit":"hour"},"overrides":{"`+uuid+`":"1","c1":"5"}}`)
	assert.Equal(t, 422, r.status, r.raw)
	assert.Equal(t, "overrides.c1", r.body["field"], r.raw)
}
