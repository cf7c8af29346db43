package api_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
)

// A first_use window starts at the first counted use. The gateway counts before the handler
// and gives the use back when the answer does not count (a 500): a request given back must not
// anchor the windows — the first that counts does. A give-back after a counted use keeps the
// anchor.
func TestGivenBackUseDoesNotAnchorFirstUse(t *testing.T) {
	var clock atomic.Int64
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	clock.Store(t0.UnixNano())
	h := newHarnessWith(t, func(o *api.Options) { o.Now = func() time.Time { return time.Unix(0, clock.Load()).UTC() } })
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/fu", keyAcme, jsonCT, `{"meter":"requests","limit":"10","period":{"unit":"hour","mode":"first_use"}}`).status)

	// 10:00: counted, then given back (as the gateway does for a 500).
	require.Equal(t, 200, h.do("POST", "/v1/quotas/fu/increment", keyAcme, jsonCT, `{"customer":"a"}`).status)
	require.Equal(t, 200, h.do("POST", "/v1/quotas/fu/adjust", keyAcme, jsonCT, `{"customer":"a","amount":"-1","at":"2026-05-01T10:00:00Z"}`).status)
	// 10:45: the first use that counts.
	clock.Store(t0.Add(45 * time.Minute).UnixNano())
	r := h.do("POST", "/v1/quotas/fu/increment", keyAcme, jsonCT, `{"customer":"a"}`)
	require.Equal(t, 200, r.status, r.raw)
	r = h.do("POST", "/v1/quotas/fu/check", keyAcme, jsonCT, `{"customer":"a"}`)
	assert.Equal(t, "1", r.body["used"], r.raw)
	assert.Equal(t, "2026-05-01T10:45:00Z", r.body["window_start"], "the window starts at the first counted use: %s", r.raw)

	// b: counted at 10:45, another at 10:50 given back: the anchor stays at 10:45.
	require.Equal(t, 200, h.do("POST", "/v1/quotas/fu/increment", keyAcme, jsonCT, `{"customer":"b"}`).status)
	clock.Store(t0.Add(50 * time.Minute).UnixNano())
	require.Equal(t, 200, h.do("POST", "/v1/quotas/fu/increment", keyAcme, jsonCT, `{"customer":"b"}`).status)
	require.Equal(t, 200, h.do("POST", "/v1/quotas/fu/adjust", keyAcme, jsonCT, `{"customer":"b","amount":"-1"}`).status)
	r = h.do("POST", "/v1/quotas/fu/check", keyAcme, jsonCT, `{"customer":"b"}`)
	assert.Equal(t, "1", r.body["used"], r.raw)
	assert.Equal(t, "2026-05-01T10:45:00Z", r.body["window_start"], r.raw)
}
