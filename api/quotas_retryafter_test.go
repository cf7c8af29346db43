package api_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
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
