package api_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A customer id longer than events.MaxCustomerLen is a 400 naming it, wherever it comes in. A
// grant to a 5,000-byte id used to publish to a subject past NATS's control line: the server
// closed the node's connection, and every later write of every customer was a 503.
func TestOverlongCustomerIDIsBadInput(t *testing.T) {
	h := newHarness(t)
	long := strings.Repeat("@", 257) // each '@' is three bytes of subject once escaped
	for _, c := range []struct{ method, path, body, field string }{
		{"POST", "/v1/customers/" + long + "/grants", `{"amount":"1","source":"wallet"}`, "id"},
		{"GET", "/v1/customers/" + long + "/balance", ``, "id"},
		{"POST", "/v1/reservations", `{"customer":"` + long + `","amount":"1"}`, "customer"},
		{"POST", "/v1/entitlements/check", `{"customer":"` + long + `","feature":"chat"}`, "customer"},
	} {
		ct := jsonCT
		if c.body == "" {
			ct = ""
		}
		r := h.do(c.method, c.path, keyAcme, ct, c.body)
		assert.Equal(t, 400, r.status, "%s %s: %s", c.method, c.path[:min(len(c.path), 30)], r.raw)
		assert.Equal(t, c.field, r.body["field"], r.raw)
	}
	ok := strings.Repeat("@", 256)
	r := h.do("POST", "/v1/customers/"+ok+"/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`)
	require.Equal(t, 201, r.status, "256 bytes is a customer id: %s", r.raw)
	r = h.do("POST", "/v1/customers/other/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`)
	assert.Equal(t, 201, r.status, "and the node still writes: %s", r.raw)
}
