package api_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// The Authorization scheme is case-insensitive (RFC 9110 §11.1), and X-API-Key still
// authenticates behind a proxy that sets Authorization to a scheme of its own.
func TestBearerInAnyCaseAndXAPIKeyBesideAnotherScheme(t *testing.T) {
	h := newHarness(t)
	for _, v := range []string{"bearer " + keyAcme, "BEARER " + keyAcme, "Bearer  " + keyAcme} {
		r := h.do("GET", "/v1/meters", "", "", "", "Authorization", v)
		assert.Equal(t, 200, r.status, "%q: %s", v, r.raw)
	}
	r := h.do("GET", "/v1/meters", "", "", "", "Authorization", "Basic cHJveHk6cHJveHk=", "X-API-Key", keyAcme)
	assert.Equal(t, 200, r.status, r.raw)
	r = h.do("GET", "/v1/meters", "", "", "", "Authorization", "bearer ak_nope")
	assert.Equal(t, 401, r.status, r.raw)
}

// A JSON body sent as another media type is a 415, as POST /v1/events already answered: it
// was read as JSON whatever its Content-Type said.
func TestJSONBodiesTakeJSONOnly(t *testing.T) {
	h := newHarness(t)
	for _, ct := range []string{"text/plain", "application/x-www-form-urlencoded", "not a media type"} {
		r := h.do("PUT", "/v1/meters/calls", keyAcme, ct, `{"event_type":"api.call","aggregation":"count"}`)
		assert.Equal(t, 415, r.status, "%s: %s", ct, r.raw)
		r = h.do("POST", "/v1/customers/c/grants", keyAcme, ct, `{"amount":"1","source":"wallet"}`)
		assert.Equal(t, 415, r.status, "%s: %s", ct, r.raw)
	}
	for _, ct := range []string{"application/json", "application/json; charset=utf-8", "application/merge-patch+json", ""} {
		r := h.do("PUT", "/v1/meters/calls", keyAcme, ct, `{"event_type":"api.call","aggregation":"count"}`)
		assert.Equal(t, 200, r.status, "%q: %s", ct, r.raw)
	}
}
