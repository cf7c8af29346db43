package api_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A ledger cursor pages one customer's ledger: one given out for customer a is refused (400
// naming cursor) on customer b's, whose page would start after a's position and leave out b's
// first entries (it was accepted).
func TestLedgerCursorIsBoundToItsCustomer(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	grant := func(c, blk string) {
		b, err := json.Marshal(events.CreditsGranted{Block: blk, Customer: c, Amount: events.MicroPerCredit, Source: "wallet", Priority: 100,
			EffectiveAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		require.NoError(t, err)
		_, err = h.js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", c), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeCreditsGranted}}})
		require.NoError(t, err)
	}
	grant("b", "blk_b1") // b's first entry
	grant("a", "blk_a1")
	grant("a", "blk_a2")
	grant("b", "blk_b2")
	r := h.do("GET", "/v1/customers/a/ledger?limit=1", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	cursorOfA, _ := r.body["next_cursor"].(string)
	require.NotEmpty(t, cursorOfA)

	r = h.do("GET", "/v1/customers/b/ledger?limit=10&cursor="+cursorOfA, keyAcme, "", "")
	if r.status == 200 {
		var ids []string
		for _, e := range r.body["data"].([]any) {
			ids = append(ids, e.(map[string]any)["entry"].(map[string]any)["block"].(string))
		}
		t.Errorf("a's cursor accepted for b: 200 with %v (b has blk_b1, blk_b2); want 400 naming cursor", ids)
		return
	}
	requireProblem(t, r, 400, "invalid-field")
	assert.Equal(t, "cursor", r.body["field"])
	// Its own customer pages on with it.
	r = h.do("GET", "/v1/customers/a/ledger?limit=10&cursor="+cursorOfA, keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	require.Len(t, r.body["data"], 1)
	assert.Equal(t, "blk_a2", r.body["data"].([]any)[0].(map[string]any)["entry"].(map[string]any)["block"])
}
