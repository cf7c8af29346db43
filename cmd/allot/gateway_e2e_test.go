package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/gateway"
)

// gatewayAllotConfig's hourly window is anchored half an hour before the test, so the test
// never straddles a window boundary (a calendar hour could begin part way and reset counts).
func gatewayAllotConfig() string {
	return `keys:
  - {key: ` + testKey + `, product: acme, env: test, admin: true}
quotas:
  per-key: {meter: requests, limit: 3, period: {unit: hour, mode: fixed, anchor: ` + midWindowAnchor(time.Hour) + `}}
  per-ip: {meter: requests, limit: 100, period: {unit: minute}}
`
}

// midWindowAnchor is an anchor for a fixed window of length d that puts now in its middle.
func midWindowAnchor(d time.Duration) string {
	return time.Now().UTC().Add(-d / 2).Truncate(time.Second).Format(time.RFC3339)
}

// upstream is a real HTTP server: /ok answers 200, /fail 500; it counts what reaches it.
func upstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/api/fail" {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "hello", r.Header.Get("X-API-Key"))
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func get(t *testing.T, url, key string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if key != "" {
		req.Header.Set("X-API-Key", key)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// checkEnforcement drives any front (middleware or gateway) that applies per-key to /api/.
func checkEnforcement(t *testing.T, front string, hits *atomic.Int64) {
	t.Helper()
	// Failures upstream never use quota.
	for i := 0; i < 5; i++ {
		resp, _ := get(t, front+"/api/fail", "key-a")
		require.Equal(t, 500, resp.StatusCode)
		assert.Regexp(t, `"per-key";r=3;t=\d+`, resp.Header.Get("RateLimit"), "an answer not counted leaves all 3")
	}
	for i := 0; i < 3; i++ {
		resp, body := get(t, front+"/api/ok", "key-a")
		require.Equal(t, 200, resp.StatusCode, body)
		assert.Regexp(t, `"per-key";q=3;w=3600`, resp.Header.Get("RateLimit-Policy"))
		assert.Regexp(t, fmt.Sprintf(`"per-key";r=%d;t=\d+`, 2-i), resp.Header.Get("RateLimit"), "remaining after this request")
	}
	before := hits.Load()
	resp, body := get(t, front+"/api/ok", "key-a")
	require.Equal(t, 429, resp.StatusCode, body)
	assert.Equal(t, "application/problem+json", resp.Header.Get("Content-Type"))
	assert.Contains(t, body, `"violated-policies":["per-key"]`)
	assert.NotEmpty(t, resp.Header.Get("Retry-After"))
	assert.Regexp(t, `"per-key";r=0;t=\d+`, resp.Header.Get("RateLimit"))
	assert.Equal(t, before, hits.Load(), "a refused request never reaches the upstream")
	// Another key has its own quota; no key at all is 401.
	resp, _ = get(t, front+"/api/ok", "key-b")
	assert.Equal(t, 200, resp.StatusCode)
	resp, _ = get(t, front+"/api/ok", "")
	assert.Equal(t, 401, resp.StatusCode)
}

func TestMiddlewareAgainstRealUpstream(t *testing.T) {
	cfg := writeConfigText(t, gatewayAllotConfig())
	allot := startServe(t, t.TempDir(), "--config", cfg)
	up, hits := upstream(t)
	client := &gateway.Client{BaseURL: allot.httpURL, APIKey: testKey}
	mw := gateway.Middleware(gateway.Options{Client: client, Identify: gateway.ByHeader("X-API-Key"), Policies: []gateway.Policy{{Quota: "per-key"}}})
	proxy := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(up.URL + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	})))
	defer proxy.Close()
	checkEnforcement(t, proxy.URL, hits)

	// Allot down: fail closed answers 503, fail open lets the request through.
	closed := httptest.NewServer(gateway.Middleware(gateway.Options{Client: &gateway.Client{BaseURL: "http://127.0.0.1:1", APIKey: "x"},
		Identify: gateway.ByHeader("X-API-Key"), Policies: []gateway.Policy{{Quota: "per-key"}}})(http.NotFoundHandler()))
	defer closed.Close()
	resp, _ := get(t, closed.URL+"/x", "k")
	assert.Equal(t, 503, resp.StatusCode)
	open := httptest.NewServer(gateway.Middleware(gateway.Options{Client: &gateway.Client{BaseURL: "http://127.0.0.1:1", APIKey: "x"},
		Identify: gateway.ByHeader("X-API-Key"), Policies: []gateway.Policy{{Quota: "per-key", FailOpen: true}}})(http.NotFoundHandler()))
	defer open.Close()
	resp, _ = get(t, open.URL+"/x", "k")
	assert.Equal(t, 404, resp.StatusCode, "fail open reaches the handler")
}

// TestMiddlewareIsExactUnderConcurrency: 100 requests of one caller at once against a limit of
// 10 (and a second, roomier policy): exactly 10 reach the handler, and both quotas end at 10.
// Checking first and counting after let a burst through.
func TestMiddlewareIsExactUnderConcurrency(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
quotas:
  ten: {meter: requests, limit: 10, period: {unit: hour, mode: fixed, anchor: `+midWindowAnchor(time.Hour)+`}}
  roomy: {meter: requests, limit: 1000, period: {unit: hour, mode: fixed, anchor: `+midWindowAnchor(time.Hour)+`}}
`)
	allot := startServe(t, t.TempDir(), "--config", cfg)
	var hits atomic.Int64
	client := &gateway.Client{BaseURL: allot.httpURL, APIKey: testKey}
	front := httptest.NewServer(gateway.Middleware(gateway.Options{Client: client, Identify: gateway.ByHeader("X-API-Key"),
		Policies: []gateway.Policy{{Quota: "roomy"}, {Quota: "ten"}}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		time.Sleep(5 * time.Millisecond) // a handler that takes a moment, as real ones do
	})))
	defer front.Close()
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, _ := get(t, front.URL+"/x", "burst")
			mu.Lock()
			codes[resp.StatusCode]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	assert.Equal(t, map[int]int{200: 10, 429: 90}, codes)
	assert.EqualValues(t, 10, hits.Load())
	for _, q := range []string{"ten", "roomy"} {
		_, body, err := allot.request("POST", "/v1/quotas/"+q+"/check", `{"customer":"burst"}`)
		require.NoError(t, err)
		assert.Equal(t, "10", body["used"], q)
	}
}

func TestGatewayCommand(t *testing.T) {
	cfg := writeConfigText(t, gatewayAllotConfig())
	allot := startServe(t, t.TempDir(), "--config", cfg)
	up, hits := upstream(t)
	port := freePort(t)
	gwCfg := filepath.Join(t.TempDir(), "gateway.yaml")
	// The upstream comes from --upstream; /api/ applies two policies in order.
	require.NoError(t, os.WriteFile(gwCfg, []byte(fmt.Sprintf(`listen: 127.0.0.1:%d
allot: {url: %s, key: %s}
routes:
  - prefix: /api/
    identify: {header: X-API-Key}
    policies: [{quota: per-key}, {quota: per-ip}]
  - prefix: /public/
    identify: {ip: true}
    policies: [{quota: per-ip, fail_open: true}]
`, port, allot.httpURL, testKey)), 0o600))
	cmd := exec.Command(allotBin, "gateway", "--config", gwCfg, "--upstream", up.URL)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	front := fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if resp, err := http.Get(front + "/public/ok"); err == nil {
			resp.Body.Close()
			break
		}
		require.True(t, time.Now().Before(deadline), "gateway did not start: %s", out.String())
		time.Sleep(20 * time.Millisecond)
	}
	checkEnforcement(t, front, hits)
	// key-a is used up: paths that clean to /api/ok are held to /api/'s policies too.
	before := hits.Load()
	for _, p := range []string{"//api/ok", "/public/../api/ok", "/./api/ok"} {
		resp, body := get(t, front+p, "key-a")
		assert.Equal(t, 429, resp.StatusCode, "%s: %s", p, body)
	}
	assert.Equal(t, before, hits.Load())
	resp, _ := get(t, front+"/api/ok", "another-key")
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, `"per-key";q=3;w=3600, "per-ip";q=100;w=60`, resp.Header.Get("RateLimit-Policy"), "both policies, in their order")
	resp, _ = get(t, front+"/public/ok", "")
	assert.Equal(t, 200, resp.StatusCode, "identified by IP")
	assert.Regexp(t, `"per-ip";q=100;w=60`, resp.Header.Get("RateLimit-Policy"))
}

// syncBuffer collects a child process's output safely.
type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b = append(s.b, p...)
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return string(s.b)
}
