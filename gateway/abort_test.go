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

// A counted 200 streamed by the upstream (an SSE completion, a large download): the caller
// reads the status and most of the body, then hangs up. httputil.ReverseProxy's failed write
// panics with http.ErrAbortHandler; the answer was given, so the use stays counted (the
// recover gave it back: hanging up before the last byte made anything free).
func TestHangUpMidBodyGivesBackAServedAnswer(t *testing.T) {
	f, allot := newFakeAllot(t, 1)
	c := streamThroughGateway(t, allot.URL, 200, "text/event-stream")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, 200, resp.StatusCode)
	buf := make([]byte, 64<<10)
	n := 0
	for n < 200<<10 { // the caller reads 200 KiB of the answer…
		m, err := resp.Body.Read(buf)
		require.NoError(t, err)
		n += m
	}
	c.Close() // …and hangs up
	time.Sleep(2 * time.Second)
	f.mu.Lock()
	used := f.used["k"]
	f.mu.Unlock()
	assert.Equal(t, 1, used, "a 200 the caller received keeps its use")
}

// A 503 the upstream streams, cut short by the caller hanging up: the proxy panics with
// http.ErrAbortHandler after writing the status, and a status that does not count still gives
// the use back (the recover kept it because something had been written).
func TestHangUpMidBodyOfAnUncountedAnswerGivesItBack(t *testing.T) {
	f, allot := newFakeAllot(t, 5)
	c := streamThroughGateway(t, allot.URL, http.StatusServiceUnavailable, "")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	require.Equal(t, 503, resp.StatusCode)
	resp.Body.Read(make([]byte, 8192))
	c.Close()
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.used["k"] == 0
	}, 10*time.Second, 20*time.Millisecond, "a 503 uses no quota, however its body ended")
}

// A handler that answers a status that does not count and then panics gives the use back.
func TestPanicAfterAnUncountedStatusGivesBack(t *testing.T) {
	f, allot := newFakeAllot(t, 3)
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	front := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		panic(http.ErrAbortHandler)
	})))
	defer front.Close()
	for range 3 {
		req, _ := http.NewRequest("GET", front.URL, nil)
		req.Header.Set("X-API-Key", "k")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	assert.Equal(t, 0, f.used["k"], "three 500s use no quota")
}

// The Authorization scheme is case-insensitive (RFC 9110 §11.1): one key sent with "Bearer",
// "bearer" or "BEARER", through a header named in any case, is one caller.
func TestByHeaderBearerInAnyCase(t *testing.T) {
	for _, name := range []string{"Authorization", "authorization"} {
		id := ByHeader(name)
		for _, v := range []string{"Bearer ak_live_x", "bearer ak_live_x", "BEARER  ak_live_x", "ak_live_x"} {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Authorization", v)
			c, ok := id(r)
			assert.True(t, ok)
			assert.Equal(t, "ak_live_x", c, "%s: %q", name, v)
		}
	}
}

// streamThroughGateway starts an upstream that answers status with a long body streamed in
// 4 KiB flushes, `allot gateway` in front of it counting quota q (allot at allotURL) for
// X-API-Key, and sends one request on a connection of its own, which it returns unread.
func streamThroughGateway(t *testing.T, allotURL string, status int, contentType string) net.Conn {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		for i := 0; i < 200; i++ {
			if _, err := fmt.Fprintf(w, "data: %s\n\n", strings.Repeat("x", 4096)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}))
	t.Cleanup(up.Close)
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allotURL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/v1/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	require.NoError(t, err)
	fmt.Fprintf(c, "GET /v1/x HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")
	return c
}
