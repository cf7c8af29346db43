package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/webhooks"
)

type hit struct {
	id       string
	sequence float64
	at       time.Time
	status   int
	verified bool
}

// receiver is a real HTTP server with endpoints that fail in chosen ways.
type receiver struct {
	mu      sync.Mutex
	srv     *httptest.Server
	hits    map[string][]hit // by path
	tries   map[string]int   // by path+id
	secrets map[string]string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{hits: map[string][]hit{}, tries: map[string]int{}, secrets: map[string]string{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var p struct {
			ID       string  `json:"id"`
			Sequence float64 `json:"sequence"`
		}
		json.Unmarshal(body, &p)
		rc.mu.Lock()
		rc.tries[r.URL.Path+p.ID]++
		try := rc.tries[r.URL.Path+p.ID]
		secret := rc.secrets[r.URL.Path]
		rc.mu.Unlock()
		status := 200
		switch r.URL.Path {
		case "/flaky":
			if try <= 2 {
				status = 500
			}
		case "/slow":
			if try == 1 {
				time.Sleep(600 * time.Millisecond) // beyond the delivery timeout
			}
		case "/gone":
			status = http.StatusGone
		case "/dead":
			status = 503
		}
		err := webhooks.Verify(secret, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), r.Header.Get("webhook-signature"), body, time.Now(), 5*time.Minute)
		rc.mu.Lock()
		rc.hits[r.URL.Path] = append(rc.hits[r.URL.Path], hit{p.ID, p.Sequence, time.Now(), status, err == nil})
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) get(path string) []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits[path]...)
}

func TestWebhookDeliveries(t *testing.T) {
	rc := newReceiver(t)
	data := t.TempDir()
	cfg := writeConfig(t)
	// The retry schedule scaled down 20,000 times: 5 s → 0.25 ms, 5 min → 15 ms, 30 min → 90 ms,
	// 2 h → 0.36 s, 5 h → 0.9 s, 10 h → 1.8 s.
	flags := []string{"--config", cfg, "--webhook-retry-scale", "0.00005", "--webhook-timeout", "300ms"}
	p := startServe(t, data, flags...)
	ids := map[string]string{}
	for _, path := range []string{"/flaky", "/slow", "/gone", "/dead"} {
		status, body, err := p.request("POST", "/v1/webhook-endpoints", fmt.Sprintf(`{"url":%q,"events":["credits.granted"]}`, rc.srv.URL+path))
		require.NoError(t, err)
		require.Equal(t, 201, status, body)
		ids[path] = body["id"].(string)
		rc.mu.Lock()
		rc.secrets[path] = body["secret"].(string)
		rc.mu.Unlock()
	}
	for i := 1; i <= 3; i++ {
		status, body, _ := p.request("POST", "/v1/customers/w/grants", fmt.Sprintf(`{"amount":"%d","source":"wallet"}`, i))
		require.Equal(t, 201, status, body)
	}
	// Restart in the middle of the retries: nothing is lost.
	time.Sleep(150 * time.Millisecond)
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	p = startServe(t, data, flags...)

	delivered := func(path string) []hit {
		var ok []hit
		seen := map[string]bool{}
		for _, h := range rc.get(path) {
			if h.status == 200 && !seen[h.id] {
				seen[h.id] = true
				ok = append(ok, h)
			}
		}
		return ok
	}
	waitFor(t, 30*time.Second, "flaky and slow deliveries", func() bool { return len(delivered("/flaky")) == 3 && len(delivered("/slow")) == 3 })
	for _, path := range []string{"/flaky", "/slow"} {
		got := delivered(path)
		for i, h := range got {
			assert.Equal(t, float64(i+1), h.sequence, "%s: delivered in per-customer order", path)
			assert.True(t, h.verified, "%s: signature verifies", path)
		}
	}
	// /flaky: the first notification failed twice, then succeeded; the second retry waited at
	// least the (scaled) 5 minutes, 15 ms.
	var first []hit
	for _, h := range rc.get("/flaky") {
		if h.id == delivered("/flaky")[0].id {
			first = append(first, h)
		}
	}
	require.GreaterOrEqual(t, len(first), 3)
	assert.GreaterOrEqual(t, first[2].at.Sub(first[1].at), 15*time.Millisecond)

	// /gone answered 410 once: the endpoint is disabled and never called again.
	waitFor(t, 10*time.Second, "the 410 to disable the endpoint", func() bool {
		_, body, _ := p.request("GET", "/v1/webhook-endpoints/"+ids["/gone"], "")
		return body["disabled"] == true
	})
	assert.Len(t, rc.get("/gone"), 1)

	// /dead never recovers: each notification is tried 8 times, dead-lettered, and the queue
	// moves on to the next one.
	waitFor(t, 60*time.Second, "dead letters", func() bool { return len(rc.get("/dead")) >= 24 })
	time.Sleep(300 * time.Millisecond)
	byID := map[string]int{}
	for _, h := range rc.get("/dead") {
		byID[h.id]++
	}
	assert.Len(t, byID, 3)
	for id, n := range byID {
		assert.Equal(t, 8, n, "notification %s: 1 attempt + 7 retries", id)
	}
	status, body, _ := p.request("GET", "/v1/webhook-endpoints/"+ids["/dead"]+"/deliveries?limit=1000", "")
	require.Equal(t, 200, status, body)
	dead := 0
	for _, e := range body["data"].([]any) {
		if e.(map[string]any)["result"] == "dead_lettered" {
			dead++
		}
	}
	assert.Equal(t, 3, dead)
}

// TestQuotaExceededWebhookOncePerWindow: refused increments notify once per window.
func TestQuotaExceededWebhookOncePerWindow(t *testing.T) {
	rc := newReceiver(t)
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
quotas:
  tiny: {meter: requests, limit: 1, period: {unit: day}}
`)
	p := startServe(t, t.TempDir(), "--config", cfg)
	status, body, _ := p.request("POST", "/v1/webhook-endpoints", fmt.Sprintf(`{"url":%q,"events":["quota.exceeded"]}`, rc.srv.URL+"/q"))
	require.Equal(t, 201, status, body)
	rc.mu.Lock()
	rc.secrets["/q"] = body["secret"].(string)
	rc.mu.Unlock()
	status, _, _ = p.request("POST", "/v1/quotas/tiny/increment", `{"customer":"qq"}`)
	require.Equal(t, 200, status)
	for i := 0; i < 3; i++ {
		status, _, _ = p.request("POST", "/v1/quotas/tiny/increment", `{"customer":"qq"}`)
		require.Equal(t, 429, status)
	}
	waitFor(t, 10*time.Second, "quota.exceeded", func() bool { return len(rc.get("/q")) >= 1 })
	time.Sleep(300 * time.Millisecond)
	hits := rc.get("/q")
	require.Len(t, hits, 1, "one notification per window, whatever the number of refusals")
	assert.True(t, hits[0].verified)
}
