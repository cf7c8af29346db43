package api_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A caller's POST /renew on a postpaid subscription advances the cycle with its usage summary,
// as the expirer's would (it had none, and the expirer then found the cycle renewed already, so
// cycle 0's usage was never reported).
func TestManualRenewOfPostpaidKeepsUsage(t *testing.T) {
	h := newHarness(t)
	r := h.do("PUT", "/v1/plans/pp", keyAcme, jsonCT, `{"credits":"100","period":{"unit":"day"},"mode":"postpaid"}`)
	require.Equal(t, 200, r.status, r.raw)
	start := time.Now().UTC().Add(-36 * time.Hour).Truncate(time.Second)
	r = h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, fmt.Sprintf(`{"customer":"c","plan":"pp","start":%q}`, start.Format(time.RFC3339)))
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["id"].(string)
	r = h.do("POST", "/v1/subscriptions/"+id+"/renew", keyAcme, jsonCT, ``)
	require.Equal(t, 200, r.status, r.raw)
	assert.Contains(t, r.body, "last_cycle_usage", "a postpaid cycle advanced without its usage summary")
	assert.EqualValues(t, 1, r.body["cycle"], "one cycle at a time: cycle 1 though cycle 1 has ended too")
}
