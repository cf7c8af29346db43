package api_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
)

func TestQuotaValidation(t *testing.T) {
	h := newHarness(t)
	tests := []struct{ body, field string }{
		{`{"limit":10,"period":{"unit":"day"}}`, "meter"},
		{`{"meter":"nope","limit":10,"period":{"unit":"day"}}`, "meter"},
		{`{"meter":"requests","period":{"unit":"day"}}`, "limit"},
		{`{"meter":"requests","limit":0,"period":{"unit":"day"}}`, "limit"},
		{`{"meter":"requests","limit":10}`, "period"},
		{`{"meter":"requests","limit":10,"period":{"unit":"fortnight"}}`, "period.unit"},
		{`{"meter":"requests","limit":10,"period":{"unit":"day","mode":"fixed"}}`, "period.anchor"},
		{`{"meter":"requests","limit":10,"period":{"unit":"day","time_zone":"Mars/Base"}}`, "period.time_zone"},
		{`{"meter":"requests","limit":10,"period":{"unit":"day"},"overrides":{"vip":"-1"}}`, "overrides.vip"},
	}
	for _, tt := range tests {
		r := h.do("PUT", "/v1/quotas/q", keyAcme, jsonCT, tt.body)
		requireProblem(t, r, 422, "invalid-field")
		assert.Equal(t, tt.field, r.body["field"], tt.body)
	}
	h.do("PUT", "/v1/meters/gauge", keyAcme, jsonCT, `{"event_type":"g","aggregation":"max","value_property":"v"}`)
	r := h.do("PUT", "/v1/quotas/q", keyAcme, jsonCT, `{"meter":"gauge","limit":10,"period":{"unit":"day"}}`)
	requireProblem(t, r, 422, "invalid-field")
	assert.Equal(t, "meter", r.body["field"])
	r = h.do("PUT", "/v1/quotas/q", keyAcme, jsonCT, `{"meter":"tokens","limit":"1000","period":{"unit":"month","mode":"fixed","anchor":"2024-01-31T04:30:00Z"}}`)
	require.Equal(t, 200, r.status, r.raw)
	requireProblem(t, h.do("PUT", "/v1/quotas/q", keyAcmeUser, jsonCT, `{"meter":"tokens","limit":"1","period":{"unit":"day"}}`), 403, "forbidden")
	requireProblem(t, h.do("GET", "/v1/quotas/q", keyGlobex, "", ""), 404, "not-found")
}

func TestQuotaIncrementCheckResetAdjust(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT, `{"meter":"requests","limit":5,"period":{"unit":"hour"},"overrides":{"vip":"7"}}`).status)
	inc := func(cust, amount string) reply {
		body := `{"customer":"` + cust + `"}`
		if amount != "" {
			body = `{"customer":"` + cust + `","amount":` + amount + `}`
		}
		return h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, body)
	}
	r := inc("c", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "1", r.body["used"])
	assert.Equal(t, "4", r.body["remaining"])
	assert.Regexp(t, `^"api";q=5;w=3600$`, r.header.Get("RateLimit-Policy"))
	assert.Regexp(t, `^"api";r=4;t=\d+$`, r.header.Get("RateLimit"))
	r = inc("c", `"3"`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "4", r.body["used"])

	// The check changes nothing.
	for i := 0; i < 3; i++ {
		r = h.do("POST", "/v1/quotas/api/check", keyAcme, jsonCT, `{"customer":"c","amount":2}`)
		require.Equal(t, 200, r.status)
		assert.Equal(t, false, r.body["allowed"])
		assert.Equal(t, "4", r.body["used"])
	}
	// Over the limit: 429, nothing counted, the problem says why.
	r = inc("c", "2")
	requireProblem(t, r, 429, "quota-exceeded")
	assert.Equal(t, []any{"api"}, r.body["violated-policies"])
	assert.Equal(t, "5", r.body["limit"])
	assert.Equal(t, "4", r.body["used"])
	assert.Equal(t, "2", r.body["requested"])
	assert.NotEmpty(t, r.body["resets_at"])
	retry, err := strconv.Atoi(r.header.Get("Retry-After"))
	require.NoError(t, err)
	assert.True(t, retry >= 1 && retry <= 3600)
	assert.Regexp(t, `^"api";r=1;t=\d+$`, r.header.Get("RateLimit"))
	r = inc("c", "1")
	require.Equal(t, 200, r.status, "the rejected call did not count")
	assert.Equal(t, "5", r.body["used"])

	requireProblem(t, inc("c", "0"), 400, "invalid-field")
	requireProblem(t, inc("c", "-1"), 400, "invalid-field")
	requireProblem(t, inc("c", `"lots"`), 400, "invalid-field")
	r = inc("c", "6")
	requireProblem(t, r, 422, "weight-over-limit")
	assert.Equal(t, "amount", r.body["field"])
	// Overrides apply per customer.
	assert.Equal(t, 200, inc("vip", "6").status)

	// A reset takes no amount, whatever its spelling (it was read and ignored: "-3" reset the
	// window all the same; then "0" passed where "0.0" did not).
	for _, amt := range []string{`"-3"`, `"0"`, `0`, `"0.0"`, `0.00`} {
		r = h.do("POST", "/v1/quotas/api/reset", keyAcme, jsonCT, `{"customer":"c","amount":`+amt+`}`)
		requireProblem(t, r, 400, "invalid-field")
		assert.Equal(t, "amount", r.body["field"], amt)
	}
	r = h.do("POST", "/v1/quotas/api/reset", keyAcme, jsonCT, `{"customer":"c"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "0", r.body["used"])
	r = h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"2.5"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "2.5", r.body["used"])
	r = h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"-9"}`)
	assert.Equal(t, "0", r.body["used"], "adjust never goes below zero")

	r = h.do("GET", "/v1/customers/c/quotas", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["data"], 1)
	requireProblem(t, h.do("POST", "/v1/quotas/none/increment", keyAcme, jsonCT, `{"customer":"c"}`), 404, "not-found")
	requireProblem(t, h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{}`), 400, "invalid-field")
}

// TestConcurrentIncrementsAreExact: 1,000 concurrent increments against a limit of 100 admit
// exactly 100.
func TestConcurrentIncrementsAreExact(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/burst", keyAcme, jsonCT, `{"meter":"requests","limit":100,"period":{"unit":"day"}}`).status)
	codes := h.concurrently(1000, "POST", "/v1/quotas/burst/increment", `{"customer":"hot"}`)
	assert.Equal(t, map[int]int{200: 100, 429: 900}, codes)
	r := h.do("POST", "/v1/quotas/burst/check", keyAcme, jsonCT, `{"customer":"hot"}`)
	assert.Equal(t, "100", r.body["used"])
}

func TestAPIKeyRequestLimit(t *testing.T) {
	fixed := time.Date(2026, 5, 1, 12, 0, 30, 0, time.UTC) // mid-minute: the window cannot roll over
	h := newHarnessWith(t, func(o *api.Options) { o.KeyRequestsPerMinute = 5; o.Now = func() time.Time { return fixed } })
	var last reply
	for i := 0; i < 6; i++ {
		last = h.do("GET", "/v1/meters", keyAcme, "", "")
	}
	requireProblem(t, last, 429, "quota-exceeded")
	assert.Equal(t, []any{"api"}, last.body["violated-policies"])
	assert.Equal(t, "api-key", last.body["limit-scope"], "told apart from a quota named api")
	assert.Regexp(t, `^"api";q=5;w=60$`, last.header.Get("RateLimit-Policy"))
	assert.Regexp(t, `^"api";r=0;t=\d+$`, last.header.Get("RateLimit"))
	assert.NotEmpty(t, last.header.Get("Retry-After"))
	assert.Equal(t, 200, h.do("GET", "/v1/meters", keyAcmeUser, "", "").status, "each key has its own limit")
}

// Several quotas at once are all or nothing: one without room refuses the increment and
// nothing is counted in the others.
func TestIncrementSeveralQuotas(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/wide", keyAcme, jsonCT, `{"meter":"requests","limit":"3","period":{"unit":"day"}}`).status)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/narrow", keyAcme, jsonCT, `{"meter":"requests","limit":"1","period":{"unit":"day"}}`).status)
	both := `{"quotas":[{"key":"wide"},{"key":"narrow"}]}`
	r := h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, both)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, true, r.body["allowed"])
	assert.Len(t, r.body["quotas"], 2)
	assert.Regexp(t, `^"wide";q=3;w=86400, "narrow";q=1;w=86400$`, r.header.Get("RateLimit-Policy"))
	assert.Regexp(t, `^"wide";r=2;t=\d+, "narrow";r=0;t=\d+$`, r.header.Get("RateLimit"))

	r = h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, both)
	requireProblem(t, r, 429, "quota-exceeded")
	assert.Equal(t, []any{"narrow"}, r.body["violated-policies"])
	assert.NotEmpty(t, r.header.Get("Retry-After"))
	used := func(q string) any {
		return h.do("POST", "/v1/quotas/"+q+"/check", keyAcme, jsonCT, `{"customer":"c1"}`).body["used"]
	}
	assert.Equal(t, "1", used("wide"), "the refused increment counted nowhere")
	assert.Equal(t, "1", used("narrow"))
	r = h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, `{"quotas":[{"key":"wide","amount":"2"}]}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "3", used("wide"))

	for _, bad := range []struct {
		body, field string
		status      int
	}{
		{`{"quotas":[]}`, "quotas", 400},
		{`{}`, "quotas", 400},
		{`{"quotas":[{"key":"wide"},{"key":"wide"}]}`, "quotas[1].key", 400},
		{`{"quotas":[{"key":"ghost"}]}`, "quotas[0].key", 404},
		{`{"quotas":[{"key":"wide","amount":"0"}]}`, "quotas[0].amount", 400},
		{`{"quotas":[{"key":"wide","amount":"x"}]}`, "quotas", 400},
	} {
		r := h.do("POST", "/v1/customers/c2/quotas/increment", keyAcme, jsonCT, bad.body)
		assert.Equal(t, bad.status, r.status, bad.body)
		assert.Equal(t, bad.field, r.body["field"], bad.body)
	}
	assert.Equal(t, "0", h.do("POST", "/v1/quotas/wide/check", keyAcme, jsonCT, `{"customer":"c2"}`).body["used"])
}

// A body the hand reader passes on (an escape in the customer, a member it does not know) is
// read by the strict decoder — its result was emptied right after ("customer is required").
// And adjust's at puts a change in the window holding it, not the current one.
func TestQuotaBodiesBeyondThePlainReader(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 30, 0, 0, time.UTC)
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return now } })
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/q", keyAcme, jsonCT, `{"meter":"requests","limit":"10","period":{"unit":"hour"}}`).status)
	r := h.do("POST", "/v1/quotas/q/increment", keyAcme, jsonCT, `{"customer":"caf\u00e9"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "café", r.body["customer"])
	r = h.do("POST", "/v1/quotas/q/check", keyAcme, jsonCT, `{"customer":"café","at":"2026-05-01T09:00:00Z"}`)
	requireProblem(t, r, 400, "invalid-field")
	assert.Equal(t, "at", r.body["field"], "at is for adjust only")

	// The use counted at 10:30 is given back after the window turned, into its own window.
	now = time.Date(2026, 5, 1, 11, 0, 5, 0, time.UTC)
	require.Equal(t, 200, h.do("POST", "/v1/quotas/q/increment", keyAcme, jsonCT, `{"customer":"café"}`).status)
	r = h.do("POST", "/v1/quotas/q/adjust", keyAcme, jsonCT, `{"customer":"café","amount":"-1","at":"2026-05-01T10:00:00Z"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "1", r.body["used"], "the current window keeps its use")
	requireProblem(t, h.do("POST", "/v1/quotas/q/adjust", keyAcme, jsonCT, `{"customer":"café","amount":"-1","at":"2026-05-01T12:00:00Z"}`), 400, "invalid-field")
}
