package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ids derived from an Idempotency-Key are the customer's own: the same key used again for
// another customer once its record is gone (kept 24 h) makes another subscription and another
// hold. It named the same ones, and renew, cancel and GET of alice's reached bob's.
func TestKeyReusedForAnotherCustomerMakesOtherIDs(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/plans/p", keyAcme, jsonCT, `{"credits":"10","period":{"unit":"day"},"mode":"prepaid"}`).status)
	a := h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, `{"customer":"alice","plan":"p"}`, "Idempotency-Key", "order-1")
	require.Equal(t, 201, a.status, a.raw)
	ra := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"alice","amount":"1"}`, "Idempotency-Key", "hold-1")
	require.Equal(t, 201, ra.status, ra.raw)
	require.Equal(t, 201, h.do("POST", "/v1/customers/bob/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`).status)

	keys, err := h.idem.ListKeys(t.Context()) // the idempotency records expire
	require.NoError(t, err)
	for k := range keys.Keys() {
		require.NoError(t, h.idem.Purge(t.Context(), k))
	}

	b := h.do("POST", "/v1/subscriptions", keyAcme, jsonCT, `{"customer":"bob","plan":"p"}`, "Idempotency-Key", "order-1")
	require.Equal(t, 201, b.status, b.raw)
	assert.NotEqual(t, a.body["id"], b.body["id"])
	g := h.do("GET", "/v1/subscriptions/"+a.body["id"].(string), keyAcme, "", "")
	assert.Equal(t, "alice", g.body["customer"], g.raw)

	rb := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"bob","amount":"1"}`, "Idempotency-Key", "hold-1")
	require.Equal(t, 201, rb.status, rb.raw)
	assert.NotEqual(t, ra.body["id"], rb.body["id"])
	g = h.do("GET", "/v1/reservations/"+ra.body["id"].(string), keyAcme, "", "")
	assert.Equal(t, "alice", g.body["customer"], g.raw)
}
