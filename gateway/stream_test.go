package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A streaming (server-sent events) handler sets its headers and flushes them at once, as SSE
// handlers do, before it writes any event: the answer is a counted 200, and it must carry the
// RateLimit headers like any other counted answer.
func TestAStreamFlushedFirstHasRateLimitHeaders(t *testing.T) {
	_, allot := newFakeAllot(t, 3)
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	front := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "data: hello\n\n")
	})))
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL+"/events", nil)
	req.Header.Set("X-API-Key", "k")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, `"q";q=3;w=3600`, resp.Header.Get("RateLimit-Policy"), "a streamed answer carries the policy")
	assert.Equal(t, `"q";r=2;t=100`, resp.Header.Get("RateLimit"))
}

// A stream whose caller hangs up mid-body (the handler panics with http.ErrAbortHandler, as
// ReverseProxy does) was served: it keeps its use (gateway/doc.go: "one that had answered keeps
// it: a caller hanging up mid-body was served"). Here the stream began with a flush.
func TestAStreamFlushedFirstCutShortKeepsItsUse(t *testing.T) {
	f, allot := newFakeAllot(t, 3)
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	done := make(chan struct{})
	front := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		w.Header().Set("Content-Type", "text/event-stream")
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // the caller hangs up
		panic(http.ErrAbortHandler)
	})))
	defer front.Close()
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	require.NoError(t, err)
	fmt.Fprintf(c, "GET /events HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	c.Close()
	<-done
	time.Sleep(200 * time.Millisecond)
	assert.EqualValues(t, 0, f.adjusts.Load(), "a served stream keeps its use")
}

// Every identity is counted under a customer id allot takes as a customer's own: an identity
// allot could not (too long, a dot segment, shaped like its UUIDs) under a hash of it, the
// same every time and different for different identities (an identity that is another's hash
// is hashed too, found in review).
func TestCustomerFor(t *testing.T) {
	for _, id := range []string{"plain", "user@example.com", "a/b", strings.Repeat("k", 256)} {
		assert.Equal(t, id, CustomerFor(id))
	}
	seen := map[string]bool{}
	for _, id := range []string{strings.Repeat("k", 257), ".", "..", "5f0c6a0e-8a3b-5c1d-9e2f-0123456789ab", "", CustomerFor(".."), "caller-x"} {
		c := CustomerFor(id)
		assert.True(t, strings.HasPrefix(c, "caller-") && len(c) == len("caller-")+32, c)
		assert.Equal(t, c, CustomerFor(id))
		assert.False(t, seen[c], "two identities share %s", c)
		seen[c] = true
	}
}
