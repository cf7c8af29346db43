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
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		for i := 0; i < 200; i++ {
			if _, err := fmt.Fprintf(w, "data: %s\n\n", strings.Repeat("x", 4096)); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			time.Sleep(5 * time.Millisecond)
		}
	}))
	defer up.Close()
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allot.URL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/v1/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	defer front.Close()

	c, err := net.Dial("tcp", front.Listener.Addr().String())
	require.NoError(t, err)
	fmt.Fprintf(c, "GET /v1/complete HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\n\r\n")
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
