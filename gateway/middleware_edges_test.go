package gateway

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeAllot answers increments (limit per customer) and adjusts like allot does.
type fakeAllot struct {
	mu       sync.Mutex
	used     map[string]int
	limit    int
	incs     atomic.Int64
	adjusts  atomic.Int64
	delay    time.Duration
	override func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeAllot(t *testing.T, limit int) (*fakeAllot, *httptest.Server) {
	f := &fakeAllot{used: map[string]int{}, limit: limit}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/customers/{id}/quotas/increment", func(w http.ResponseWriter, r *http.Request) {
		if f.override != nil && f.override(w, r) {
			return
		}
		if f.delay > 0 {
			time.Sleep(f.delay)
		}
		f.incs.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		c := r.PathValue("id")
		if f.used[c] >= f.limit {
			w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"q";q=%d;w=3600`, f.limit))
			w.Header().Set("RateLimit", `"q";r=0;t=100`)
			w.Header().Set("Retry-After", "100")
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(429)
			w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","status":429,"violated-policies":["q"]}`))
			return
		}
		f.used[c]++
		w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"q";q=%d;w=3600`, f.limit))
		w.Header().Set("RateLimit", fmt.Sprintf(`"q";r=%d;t=100`, f.limit-f.used[c]))
		json.NewEncoder(w).Encode(map[string]any{"allowed": true, "quotas": []map[string]any{{"quota": "q", "window_start": time.Now().UTC().Truncate(time.Hour)}}})
	})
	mux.HandleFunc("POST /v1/quotas/{q}/adjust", func(w http.ResponseWriter, r *http.Request) {
		f.adjusts.Add(1)
		var b struct{ Customer string }
		json.NewDecoder(r.Body).Decode(&b)
		f.mu.Lock()
		f.used[b.Customer]--
		f.mu.Unlock()
		w.Write([]byte(`{}`))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return f, srv
}

// A handler that sends 103 Early Hints before its 200 is answered 200, counted: interim
// responses are not the answer (the 103 was taken as the final status, and the use given back).
func TestEarlyHintsDoNotGiveBackA200(t *testing.T) {
	f, allot := newFakeAllot(t, 3)
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	front := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "ok")
	})))
	defer front.Close()
	ok := 0
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", front.URL, nil)
		req.Header.Set("X-API-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			ok++
		}
	}
	assert.Equal(t, 3, ok, "limit 3: the 4th..10th 200 must be refused")
	assert.EqualValues(t, 0, f.adjusts.Load(), "a 200 response must not be given back")
}

// The same through `allot gateway` (ReverseProxy forwards an upstream's 1xx), and the final
// response keeps its RateLimit headers (they were set on the 103, then cleared).
func TestProxyEarlyHints(t *testing.T) {
	f, allot := newFakeAllot(t, 3)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "ok")
	}))
	defer up.Close()
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allot.URL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/api/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	defer front.Close()
	codes := map[int]int{}
	var last *http.Response
	for i := 0; i < 10; i++ {
		req, _ := http.NewRequest("GET", front.URL+"/api/x", nil)
		req.Header.Set("X-API-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		codes[resp.StatusCode]++
		last = resp
		if i == 0 {
			assert.NotEmpty(t, resp.Header.Get("RateLimit"), "a counted 200 carries RateLimit")
		}
	}
	_ = last
	assert.Equal(t, map[int]int{200: 3, 429: 7}, codes)
	assert.EqualValues(t, 0, f.adjusts.Load())
}

// A handler that panics answers nothing (net/http aborts the connection): its use is given back.
func TestPanicGivesBack(t *testing.T) {
	f, allot := newFakeAllot(t, 3)
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	front := httptest.NewUnstartedServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	})))
	front.Start()
	defer front.Close()
	req, _ := http.NewRequest("GET", front.URL, nil)
	req.Header.Set("X-API-Key", "k")
	_, err := http.DefaultClient.Do(req)
	require.Error(t, err, "no response")
	assert.EqualValues(t, 1, f.adjusts.Load(), "the use of a request that got no counted status is given back")
}

// upgradeFront is `allot gateway` in front of an upstream that switches every request to the
// "echo" protocol, with one policy (quota q) on /ws/.
func upgradeFront(t *testing.T, allotURL string) *httptest.Server {
	t.Helper()
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
	t.Cleanup(up.Close)
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allotURL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/ws/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	t.Cleanup(front.Close)
	return front
}

// upgrade asks front for a protocol switch on a connection of its own and returns the status.
func upgrade(t *testing.T, front *httptest.Server) int {
	t.Helper()
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	require.NoError(t, err)
	defer c.Close()
	fmt.Fprintf(c, "GET /ws/x HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	return resp.StatusCode
}

// A protocol upgrade (WebSocket) through `allot gateway` switches protocols: the middleware's
// writer lets the proxy hijack the connection (it answered 502).
func TestProxyUpgrade(t *testing.T) {
	_, allot := newFakeAllot(t, 100)
	assert.Equal(t, 101, upgrade(t, upgradeFront(t, allot.URL)))
}

// A protocol switch the handler serves (101, a WebSocket) is a served request, counted by
// default: with a quota of 1 the second upgrade is refused (its use was given back when the
// session ended, so a caller could open any number one after another).
func TestUpgradesAreCounted(t *testing.T) {
	f, allot := newFakeAllot(t, 1)
	front := upgradeFront(t, allot.URL)
	var codes []int
	for i := 0; i < 3; i++ {
		codes = append(codes, upgrade(t, front))
		time.Sleep(200 * time.Millisecond)
	}
	f.mu.Lock()
	used := f.used["k"]
	f.mu.Unlock()
	assert.Equal(t, []int{101, 429, 429}, codes, "a quota of 1 admits one upgraded session")
	assert.Equal(t, 1, used, "the served upgrade keeps its use")
}

// A caller that hangs up while its request is being counted is not served, and its use is given
// back: the cancelled call read as allot being unavailable, and fail-open policies ran the
// handler uncounted.
func TestAbortedRequestRunsUncounted(t *testing.T) {
	f, allot := newFakeAllot(t, 1)
	f.delay = 300 * time.Millisecond
	var ran atomic.Int64
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q", FailOpen: true}}})
	front := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ran.Add(1) // e.g. sends an e-mail, starts a job
	})))
	defer front.Close()
	for i := 0; i < 5; i++ {
		c, err := net.Dial("tcp", front.Listener.Addr().String())
		require.NoError(t, err)
		fmt.Fprintf(c, "POST /send HTTP/1.1\r\nHost: x\r\nX-API-Key: k\r\nContent-Length: 0\r\n\r\n")
		time.Sleep(50 * time.Millisecond)
		c.Close()
	}
	time.Sleep(time.Second)
	f.mu.Lock()
	used := f.used["k"]
	f.mu.Unlock()
	assert.Zero(t, ran.Load(), "every caller hung up before it was counted: nothing served")
	assert.Zero(t, used, "and every use counted for them given back")
}

// allot's own per-key limit refusing the gateway's key (429, policy "api") is not the caller's
// quota: it fails open or closed like an outage (it was handed to every caller as theirs).
func TestAllotOwnLimitIsNotTheCallersQuota(t *testing.T) {
	f, allot := newFakeAllot(t, 100)
	f.override = func(w http.ResponseWriter, r *http.Request) bool {
		// exactly what api/limit.go writes
		w.Header().Set("RateLimit-Policy", `"api";q=600000;w=60`)
		w.Header().Set("RateLimit", `"api";r=0;t=20`)
		w.Header().Set("Retry-After", "20")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(429)
		w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","title":"Quota exceeded","status":429,"detail":"this API key made more than 600000 requests this minute","violated-policies":["api"],"limit-scope":"api-key"}`))
		return true
	}
	// Whatever the route's quota is called, "api" included: the refusal says it is allot's
	// limit on the gateway's key.
	for _, quota := range []string{"q", "api"} {
		var ran atomic.Int64
		mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: quota, FailOpen: true}}})
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "/", nil)
		req.Header.Set("X-API-Key", "end-user")
		mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1) })).ServeHTTP(rec, req)
		t.Logf("status %d RateLimit-Policy %q body %s", rec.Code, rec.Header().Get("RateLimit-Policy"), rec.Body)
		assert.EqualValues(t, 1, ran.Load(), "quota %q: allot refusing the gateway's key is allot unavailable: fail open", quota)
	}
}

// A quota named "api" refusing the caller is the caller's quota (it was taken for allot's
// own per-key limit, which has the same name, and failed open: unlimited use).
func TestQuotaNamedAPIRefusesTheCaller(t *testing.T) {
	real := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("RateLimit-Policy", `"api";q=1;w=60`)
		w.Header().Set("RateLimit", `"api";r=0;t=20`)
		w.Header().Set("Retry-After", "20")
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(429)
		w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","title":"Quota exceeded","status":429,"violated-policies":["api"],"limit":"1","used":"1","requested":"1"}`))
	}))
	defer real.Close()
	var ran atomic.Int64
	mw := Middleware(Options{Client: &Client{BaseURL: real.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "api", FailOpen: true}}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-API-Key", "end-user")
	mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { ran.Add(1) })).ServeHTTP(rec, req)
	assert.Zero(t, ran.Load(), "the caller's quota api is used up: not served")
	assert.Equal(t, 429, rec.Code)
}

// Route prefixes match whatever the letter case (an upstream that routes case-insensitively
// served /API/x without /api/'s policies), and /api/ covers /api.
func TestCaseBypass(t *testing.T) {
	f, allot := newFakeAllot(t, 1)
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := strings.ToLower(r.URL.Path); strings.HasPrefix(p, "/api/") || p == "/api" {
			hits.Add(1)
			return
		}
		http.NotFound(w, r)
	}))
	defer up.Close()
	h, err := Proxy(Config{Upstream: up.URL, Allot: AllotConfig{URL: allot.URL, Key: "k"},
		Routes: []RouteConfig{{Prefix: "/api/", Identify: IdentifyConfig{Header: "X-API-Key"}, Policies: []PolicyConfig{{Quota: "q"}}}}}, nil)
	require.NoError(t, err)
	front := httptest.NewServer(h)
	defer front.Close()
	for _, p := range []string{"/api/x", "/API/x", "/Api/x", "/aPi/x", "/api", "/API"} {
		req, _ := http.NewRequest("GET", front.URL+p, nil)
		req.Header.Set("X-API-Key", "k")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.EqualValues(t, 1, hits.Load(), "limit 1 on /api/: only one request may reach the upstream; allot saw %d increments", f.incs.Load())
}

// JWT: an exp that is not a number refuses the token (it was ignored: the token never
// expired); a fractional exp is a NumericDate like any other.
func TestJWTExpNotNumber(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	key := JWTKey{HMACSecret: []byte("s3cret")}
	_, err := VerifyJWT(hs256(t, "s3cret", map[string]any{"sub": "x", "exp": "1000"}), key, now)
	assert.ErrorIs(t, err, ErrJWT, "exp 1000 (as a string) is long past")
	_, err = VerifyJWT(hs256(t, "s3cret", map[string]any{"sub": "x", "exp": float64(now.Unix()) + 60.5}), key, now)
	assert.NoError(t, err, "NumericDate may be fractional (RFC 7519 §2)")
	_, err = VerifyJWT(hs256(t, "s3cret", map[string]any{"sub": "x", "nbf": "0"}), key, now)
	assert.ErrorIs(t, err, ErrJWT, "an nbf that is not a number")
	// The auth scheme is case-insensitive (RFC 9110 §11.1).
	id := ByJWTClaim("sub", key, func() time.Time { return now })
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "bearer "+hs256(t, "s3cret", map[string]any{"sub": "cust-1", "exp": now.Unix() + 60}))
	who, ok := id(req)
	assert.True(t, ok)
	assert.Equal(t, "cust-1", who)
}

// A 422 from allot (a weight over the whole limit: never admissible) is passed on without a
// Retry-After (it had Retry-After: 1).
func TestWeightOverLimitHasNoRetryAfter(t *testing.T) {
	f, allot := newFakeAllot(t, 100)
	f.override = func(w http.ResponseWriter, r *http.Request) bool {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(422)
		w.Write([]byte(`{"type":"https://allot.dev/problems/weight-over-limit","status":422,"violated-policies":["q"]}`))
		return true
	}
	mw := Middleware(Options{Client: &Client{BaseURL: allot.URL}, Identify: ByHeader("X-API-Key"), Policies: []Policy{{Quota: "q"}}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("X-API-Key", "blocked")
	mw(http.NotFoundHandler()).ServeHTTP(rec, req)
	assert.Equal(t, 422, rec.Code)
	assert.Empty(t, rec.Header().Get("Retry-After"), "a request that can never be admitted gets no Retry-After")
}
