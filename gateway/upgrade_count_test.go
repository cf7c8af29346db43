package gateway

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A protocol switch the handler serves (101, a WebSocket) is a served request, counted by
// default: with a quota of 1 the second upgrade is refused (its use was given back when the
// session ended, so a caller could open any number one after another).
func TestUpgradesAreNeverCounted(t *testing.T) {
	f, allot := newFakeAllot(t, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		brw.Flush()
	}))
	defer up.Close()
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allot.URL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/ws/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	defer front.Close()
	var codes []int
	for i := 0; i < 3; i++ {
		c, err := net.Dial("tcp", front.Listener.Addr().String())
		require.NoError(t, err)
		fmt.Fprintf(c, "GET /ws/x HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		require.NoError(t, err)
		codes = append(codes, resp.StatusCode)
		c.Close()
		time.Sleep(200 * time.Millisecond)
	}
	f.mu.Lock()
	used := f.used["k"]
	f.mu.Unlock()
	assert.Equal(t, []int{101, 429, 429}, codes, "a quota of 1 admits one upgraded session")
	assert.Equal(t, 1, used, "the served upgrade keeps its use")
}
