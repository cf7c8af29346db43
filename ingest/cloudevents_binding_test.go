package ingest

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// CloudEvents HTTP binding 1.0.2, 3.1.3.2: ce-* header values are percent-encoded by the sender
// (space, '"', '%' and non-ASCII) and a receiver MUST percent-decode them once. The SDKs do
// this: subject "user 42 café" travels as "user%2042%20caf%C3%A9".
func TestBinaryHeadersArePercentDecoded(t *testing.T) {
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "order%2F7") // "order/7" need not be encoded, but "unnecessarily encoded MUST be accepted"
	h.Set("Ce-Source", "/svc")
	h.Set("Ce-Type", "llm")
	h.Set("Ce-Subject", "user%2042%20caf%C3%A9")
	h.Set("Content-Type", "application/json")
	body, p := BinaryToStructured(h, []byte(`{"tokens":"2"}`))
	require.Nil(t, p)
	cands, rejs, p := Parse(scope, MediaCloudEvent, body, meters, now)
	require.Nil(t, p)
	require.Empty(t, rejs)
	assert.Equal(t, "user 42 café", cands[0].Event.Customer, "same customer as the structured-mode event with subject \"user 42 café\"")
	assert.Equal(t, "order/7", cands[0].Event.ID)
}

// RFC 3339 §5.6 (NOTE): "T" and "Z" may be lower case (Go's layout refused them); a comma
// before the fraction is no RFC 3339 (Go's parser took it).
func TestRFC3339TimesAsTheRFCHasThem(t *testing.T) {
	cands, rejs, p := Parse(scope, MediaJSON, []byte(`{"id":"e","type":"llm","customer":"c","time":"2026-05-01t09:00:00z","data":{"tokens":1}}`), meters, now)
	require.Nil(t, p)
	assert.Empty(t, rejs)
	require.Len(t, cands, 1)
	_, rejs, p = Parse(scope, MediaJSON, []byte(`{"id":"e","type":"llm","customer":"c","time":"2026-05-01T09:00:00,5Z","data":{"tokens":1}}`), meters, now)
	require.Nil(t, p)
	require.Len(t, rejs, 1)
}

// A ce-* header that is not percent-encoded UTF-8 is a 400 naming the attribute.
func TestBinaryHeaderThatIsNoPercentEncoding(t *testing.T) {
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "e1")
	h.Set("Ce-Source", "/svc")
	h.Set("Ce-Type", "llm")
	h.Set("Ce-Subject", "user%zz")
	h.Set("Content-Type", "application/json")
	_, p := BinaryToStructured(h, []byte(`{"tokens":"2"}`))
	require.NotNil(t, p)
	assert.Equal(t, "subject", p.Field)
}
