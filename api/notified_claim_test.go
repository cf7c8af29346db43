package api_test

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// When queueing a quota.exceeded fails (the outbox refuses, the caller hangs up), its claim in
// ALLOT_NOTIFIED is released, and a later refusal in the window sends it (the claim stayed,
// and the window's quota.exceeded was never sent).
func TestQuotaExceededLostWhenQueueingFails(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	s, err := h.js.Stream(ctx, bus.OutboxStream)
	require.NoError(t, err)
	orig := s.CachedInfo().Config
	full := orig
	full.MaxMsgs, full.Discard = 1, jetstream.DiscardNew
	_, err = h.js.UpdateStream(ctx, full)
	require.NoError(t, err)
	_, err = h.js.Publish(ctx, events.OutboxPrefix+".x.y.z", []byte("{}"))
	require.NoError(t, err)

	require.Equal(t, 200, h.do("PUT", "/v1/quotas/daily", keyAcme, jsonCT, `{"meter":"requests","limit":"1","period":{"unit":"day"}}`).status)
	require.Equal(t, 200, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"c"}`).status)
	requireProblem(t, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"c"}`), 429, "quota-exceeded") // outbox full: not queued

	// The outbox recovers; the customer is refused again in the same window.
	require.NoError(t, s.Purge(ctx))
	_, err = h.js.UpdateStream(ctx, orig)
	require.NoError(t, err)
	requireProblem(t, h.do("POST", "/v1/quotas/daily/increment", keyAcme, jsonCT, `{"customer":"c"}`), 429, "quota-exceeded")
	info, err := s.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.State.Msgs, "the window's quota.exceeded is queued once the outbox takes it")
}
