package api_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/bus"
)

// Two quotas violated at once (a per-minute burst limit and a daily cap): Retry-After and the
// problem's figures are the daily cap's, whose window resets last — the request cannot be
// admitted before (they were the burst limit's: retry in 30 s, refused again).
func TestRetryAfterCoversEveryViolatedQuota(t *testing.T) {
	now := time.Date(2026, 5, 1, 10, 30, 30, 0, time.UTC)
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return now } })
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/burst", keyAcme, jsonCT, `{"meter":"requests","limit":"1","period":{"unit":"minute"}}`).status)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/daily", keyAcme, jsonCT, `{"meter":"requests","limit":"1","period":{"unit":"day"}}`).status)
	both := `{"quotas":[{"key":"burst"},{"key":"daily"}]}`
	require.Equal(t, 200, h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, both).status)
	r := h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, both)
	requireProblem(t, r, 429, "quota-exceeded")
	midnight := time.Date(2026, 5, 2, 0, 0, 0, 0, time.UTC)
	assert.Equal(t, strconv.Itoa(int(midnight.Sub(now).Seconds())), r.header.Get("Retry-After"))
	assert.Equal(t, midnight.Format(time.RFC3339), r.body["resets_at"])
	assert.ElementsMatch(t, []any{"burst", "daily"}, r.body["violated-policies"])
	// At the time it says, the request is admitted.
	now = midnight
	assert.Equal(t, 200, h.do("POST", "/v1/customers/c1/quotas/increment", keyAcme, jsonCT, both).status)
}

// An adjustment dated in a window older than every window kept for the customer's quota is a
// 400 naming at: it would count nowhere (it was answered 200 and lost). One dated in a kept
// window counts there.
func TestAdjustOutsideTheKeptWindows(t *testing.T) {
	now := time.Date(2026, 5, 1, 12, 30, 0, 0, time.UTC)
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return now } })
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT, `{"meter":"requests","limit":"100","period":{"unit":"hour"}}`).status)
	for _, at := range []string{"2026-05-01T09:10:00Z", "2026-05-01T10:10:00Z", "2026-05-01T11:10:00Z"} {
		r := h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"5","at":"`+at+`"}`)
		require.Equal(t, 200, r.status, r.raw)
	}
	require.Equal(t, 200, h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`).status)
	r := h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"5","at":"2026-05-01T07:10:00Z"}`)
	requireProblem(t, r, 400, "invalid-field")
	assert.Equal(t, "at", r.body["field"])
	r = h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"5","at":"2026-05-01T11:20:00Z"}`)
	require.Equal(t, 200, r.status, r.raw)
	r = h.do("POST", "/v1/quotas/api/adjust", keyAcme, jsonCT, `{"customer":"c","amount":"-1","at":"2026-05-01T07:10:00Z"}`)
	assert.Equal(t, 200, r.status, "giving back into a forgotten window changes nothing, and says so as any give-back with nothing to give: %s", r.raw)
}

// quota.exceeded goes out once per window however far apart the refusals: the outbox's
// duplicate window (an hour by default; a second here) alone let a daily quota's refusals an
// hour apart notify twice.
func TestQuotaExceededOncePerWindow(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	s, err := h.js.Stream(ctx, bus.OutboxStream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	cfg.Duplicates = time.Second
	_, err = h.js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/daily", keyAcme, jsonCT, `{"meter":"requests","limit":"1","period":{"unit":"day"}}`).status)
	require.Equal(t, 200, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"c"}`).status)
	for i := 0; i < 2; i++ {
		requireProblem(t, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"c"}`), 429, "quota-exceeded")
		time.Sleep(1500 * time.Millisecond) // past the outbox's duplicate window
	}
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.State.Msgs, "one quota.exceeded for the day's window")
	// Another customer's window is its own.
	require.Equal(t, 200, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"d"}`).status)
	requireProblem(t, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"d"}`), 429, "quota-exceeded")
	info, err = s.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 2, info.State.Msgs)
}

// A webhook endpoint on loopback, a private network or the cloud metadata address is refused
// (422 naming url) unless the operator allows private addresses: deliveries would reach into
// the operator's network, and the deliveries log would map it.
func TestWebhookEndpointsOnPrivateAddresses(t *testing.T) {
	h := newHarness(t)
	for _, u := range []string{"http://127.0.0.1:8080/hook", "http://169.254.169.254/latest", "http://10.0.0.5/x", "http://[::1]/x", "http://localhost:9/x"} {
		r := h.do("POST", "/v1/webhook-endpoints", keyAcme, jsonCT, `{"url":"`+u+`","events":["*"]}`)
		requireProblem(t, r, 422, "invalid-field")
		assert.Equal(t, "url", r.body["field"], u)
	}
	open := newHarnessWith(t, func(o *api.Options) { o.WebhooksAllowPrivate = true })
	r := open.do("POST", "/v1/webhook-endpoints", keyAcme, jsonCT, `{"url":"http://127.0.0.1:8080/hook","events":["*"]}`)
	assert.Equal(t, 201, r.status, r.raw)
}
