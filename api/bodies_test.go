package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A body is one JSON value: anything after it is a 400 invalid-json and changes nothing. A
// grant with `x` after its object had been written (found by the API fuzz test), and so had
// every body decoded strictly — reservations, quota calls, configuration PUTs.
func TestABodyIsOneJSONValue(t *testing.T) {
	h := newHarness(t)
	for _, tail := range []string{`x`, `}`, ` {"amount":"5"}`, ` 1`} {
		r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"10","source":"promo"}`+tail)
		requireProblem(t, r, 400, "invalid-json")
	}
	bal := h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	require.Equal(t, 200, bal.status, bal.raw)
	assert.Equal(t, "0", bal.body["balance"], "nothing was granted")
	for _, req := range []struct{ method, path, body string }{
		{"PUT", "/v1/meters/m", `{"event_type":"api.call","aggregation":"count"} x`},
		{"PUT", "/v1/rules/r", `{"meter":"m","model":"per_unit","price":"1"} x`},
		{"PUT", "/v1/quotas/q", `{"meter":"m","limit":"1","period":{"unit":"day"}}{}`},
		{"POST", "/v1/reservations", `{"customer":"c","amount":"1"}]`},
	} {
		requireProblem(t, h.do(req.method, req.path, keyAcme, jsonCT, req.body), 400, "invalid-json")
	}
	// Whitespace after the value is fine.
	require.Equal(t, 201, h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, "{\"amount\":\"10\",\"source\":\"promo\"} \n").status)

	// A member with an empty name names no field: invalid-json, not an invalid-field without one.
	r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"":"wallet","amount":"1","customer":"c"}`)
	requireProblem(t, r, 400, "invalid-json")
}

// A subscription whose first cycle would end past year 9999 is a 400 naming start: it was a
// 503 "try again" that never passed (the entry could not be written).
func TestASubscriptionEndingPastYear9999IsRefused(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/plans/p", keyAcme, jsonCT, `{"credits":"1","period":{"unit":"day"},"mode":"prepaid"}`).status)
	r := h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, `{"customer":"far","plan":"p","start":"9999-12-31T12:00:00Z"}`)
	requireProblem(t, r, 400, "invalid-field")
	assert.Equal(t, "start", r.body["field"], r.raw)
	require.Equal(t, 201, h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, `{"customer":"far","plan":"p","start":"9999-12-30T12:00:00Z"}`).status)
}
