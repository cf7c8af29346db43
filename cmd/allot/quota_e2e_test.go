package main

import (
	"fmt"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUsageCountsInTheWindowOfItsEventTime: usage events of a quota's meter count toward the
// window holding their event time, not their arrival.
func TestUsageCountsInTheWindowOfItsEventTime(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
quotas:
  daily-tokens: {meter: tokens, limit: 1000, period: {unit: day, time_zone: Europe/Berlin}}
`)
	p := startServe(t, t.TempDir(), "--config", cfg)
	now := time.Now().UTC()
	loc, _ := time.LoadLocation("Europe/Berlin")
	today := now.In(loc)
	midnight := time.Date(today.Year(), today.Month(), today.Day(), 0, 0, 0, 0, loc)
	events := fmt.Sprintf(`[
	  {"id":"q1","type":"llm","customer":"c","time":%q,"data":{"tokens":300}},
	  {"id":"q2","type":"llm","customer":"c","time":%q,"data":{"tokens":50.5}},
	  {"id":"q3","type":"llm","customer":"c","time":%q,"data":{"tokens":7}}
	]`, now.Format(time.RFC3339Nano), midnight.Add(time.Second).UTC().Format(time.RFC3339Nano), midnight.Add(-time.Second).UTC().Format(time.RFC3339Nano))
	status, res := p.post("/v1/events", "application/json", events)
	require.Equal(t, 202, status, res)
	var body map[string]any
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_, body, _ = p.request("POST", "/v1/quotas/daily-tokens/check", `{"customer":"c"}`)
		if body["used"] == "350.5" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.Equal(t, "350.5", body["used"], "yesterday's (Berlin) event is not in today's window: %v", body)
	assert.Equal(t, midnight.UTC().Format(time.RFC3339), body["window_start"])
	// Increments share the window with usage.
	status, body, err := p.request("POST", "/v1/quotas/daily-tokens/increment", `{"customer":"c","amount":"649.5"}`)
	require.NoError(t, err)
	require.Equal(t, 200, status, body)
	status, body, _ = p.request("POST", "/v1/quotas/daily-tokens/increment", `{"customer":"c","amount":"1"}`)
	assert.Equal(t, 429, status, body)
}

// TestTwoProcessesQuotaExactness: two processes on one NATS, 1,000 concurrent increments
// against a limit of 100: exactly 100 allowed, used ends at 100.
func TestTwoProcessesQuotaExactness(t *testing.T) {
	url := startNATSServer(t)
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
quotas:
  burst: {meter: requests, limit: 100, period: {unit: hour, mode: fixed, anchor: `+midWindowAnchor(time.Hour)+`}}
`)
	// The first process creates the streams with four quota lanes; the second takes the
	// stream's.
	p1 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg, "--quota-lanes", "4")
	p2 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg)
	codes := concurrently(1000, []*proc{p1, p2}, "POST", "/v1/quotas/burst/increment", `{"customer":"hot"}`)
	assert.Equal(t, map[int]int{200: 100, 429: 900}, codes)
	for _, p := range []*proc{p1, p2} {
		_, body, err := p.request("POST", "/v1/quotas/burst/check", `{"customer":"hot"}`)
		require.NoError(t, err)
		assert.Equal(t, "100", body["used"])
	}
	// Many customers over the four lanes, 10 each against the limit of 100: all admitted.
	var wg sync.WaitGroup
	for i := 0; i < 400; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := []*proc{p1, p2}[i%2]
			status, body, err := p.request("POST", "/v1/quotas/burst/increment", fmt.Sprintf(`{"customer":"c%d"}`, i%40))
			assert.NoError(t, err)
			assert.Equal(t, 200, status, "%v", body)
		}()
	}
	wg.Wait()
	for i := 0; i < 40; i++ {
		_, body, err := p2.request("POST", "/v1/quotas/burst/check", fmt.Sprintf(`{"customer":"c%d"}`, i))
		require.NoError(t, err)
		assert.Equal(t, "10", body["used"], "c%d", i)
	}

	// A process asking for another number of lanes is refused: customers would change lane.
	out, err := exec.Command(allotBin, "serve", "--nats-url", url, "--data", t.TempDir(), "--quota-lanes", "2", "--http", "127.0.0.1:0").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "quota lanes is fixed", "%s", out)
}
