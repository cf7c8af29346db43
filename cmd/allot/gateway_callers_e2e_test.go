package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/allot-dev/allot/gateway"
)

// A caller names itself (X-API-Key) with a value allot refuses as a customer id: longer than
// 256 bytes (400), ".." (the path cleans to another endpoint), or a UUID-shaped id nobody has
// (404). allot is up and answering; the caller must not get through a quota of 1 five times.
// Fail open is for "when allot is unreachable", not for a caller allot refuses (found in
// review): such identities are counted under a hash of them (gateway.CustomerFor).
func TestGatewayCountsEveryCallerIdentity(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
quotas:
  one: {meter: requests, limit: 1, period: {unit: hour, mode: fixed, anchor: `+midWindowAnchor(time.Hour)+`}}
`)
	allot := startServe(t, t.TempDir(), "--config", cfg)
	var hits atomic.Int64
	var mu sync.Mutex
	var errs []string
	client := &gateway.Client{BaseURL: allot.httpURL, APIKey: testKey}
	front := httptest.NewServer(gateway.Middleware(gateway.Options{Client: client, Identify: gateway.ByHeader("X-API-Key"),
		Policies: []gateway.Policy{{Quota: "one", FailOpen: true}}, OnError: func(err error) { mu.Lock(); errs = append(errs, err.Error()); mu.Unlock() }})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })))
	defer front.Close()

	// A plain key: 1 through, then 429 — the quota works.
	codes := []int{}
	for i := 0; i < 3; i++ {
		resp, _ := get(t, front.URL+"/x", "plain")
		codes = append(codes, resp.StatusCode)
	}
	assert.Equal(t, []int{200, 429, 429}, codes)

	for _, id := range []string{strings.Repeat("k", 300), "..", "5f0c6a0e-8a3b-5c1d-9e2f-0123456789ab"} {
		before := hits.Load()
		codes := []int{}
		for i := 0; i < 5; i++ {
			resp, _ := get(t, front.URL+"/x", id)
			codes = append(codes, resp.StatusCode)
		}
		assert.LessOrEqual(t, hits.Load()-before, int64(1), "caller %.20q… reached the handler %d times past a limit of 1 (codes %v)", id, hits.Load()-before, codes)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Empty(t, errs, "allot refused none of them")
}
