package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

const subsConfig = `keys:
  - {key: ` + testKey + `, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 1, effective_from: 2020-01-01T00:00:00Z}
`

// TestRenewalRaceAcrossProcesses: two processes on one NATS, 20 concurrent renewals of the same
// subscription: cycle 1 is granted exactly once.
func TestRenewalRaceAcrossProcesses(t *testing.T) {
	url := startNATSServer(t)
	cfg := writeConfigText(t, subsConfig)
	p1 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg)
	p2 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg)
	status, body, err := p1.request("PUT", "/v1/plans/team", `{"credits":"100","period":{"unit":"hour"},"mode":"prepaid"}`)
	require.NoError(t, err)
	require.Equal(t, 200, status, body)
	start := time.Now().UTC().Add(-90 * time.Minute).Truncate(time.Second)
	status, body, _ = p1.request("POST", "/v1/subscriptions", fmt.Sprintf(`{"customer":"race","plan":"team","start":%q}`, start.Format(time.RFC3339)))
	require.Equal(t, 201, status, body)
	id := body["id"].(string)

	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		p := []*proc{p1, p2}[i%2]
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, _, err := p.request("POST", "/v1/subscriptions/"+id+"/renew", "")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				status = -1
			}
			codes[status]++
		}()
	}
	wg.Wait()
	assert.Equal(t, map[int]int{200: 20}, codes)

	// The ledger holds exactly one renewal, for cycle 1.
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "ALLOT_LEDGER")
	require.NoError(t, err)
	var renewals []int64
	for seq := uint64(1); ; seq++ {
		m, err := s.GetMsg(context.Background(), seq, jetstream.WithGetMsgSubject(events.LedgerSubject("acme", "test", "race")))
		if err != nil {
			break
		}
		seq = m.Sequence
		if m.Header.Get(events.HeaderType) == events.TypeSubscriptionRenewed {
			var e events.SubscriptionRenewed
			require.NoError(t, json.Unmarshal(m.Data, &e))
			renewals = append(renewals, e.Grant.Index)
		}
	}
	assert.Equal(t, []int64{1}, renewals)
	for _, p := range []*proc{p1, p2} {
		_, bal, _ := p.request("GET", "/v1/customers/race/balance", "")
		assert.Equal(t, "100", bal["balance"], "cycle 0 is over; cycle 1 granted once")
	}
}

// TestPostpaidAdvancesByItself: a postpaid subscription whose cycle has ended is renewed by
// allot, with the usage of the cycle that ended.
func TestPostpaidAdvancesByItself(t *testing.T) {
	cfg := writeConfigText(t, subsConfig)
	p := startServe(t, t.TempDir(), "--config", cfg)
	status, body, _ := p.request("PUT", "/v1/plans/metered", `{"credits":"10","period":{"unit":"minute"},"mode":"postpaid"}`)
	require.Equal(t, 200, status, body)
	start := time.Now().UTC().Add(-57 * time.Second).Truncate(time.Second) // the cycle ends in ~3 s: time for the usage to be rated
	status, body, _ = p.request("POST", "/v1/subscriptions", fmt.Sprintf(`{"customer":"pp","plan":"metered","start":%q}`, start.Format(time.RFC3339)))
	require.Equal(t, 201, status, body)
	id := body["id"].(string)
	status, res := p.post("/v1/events", "application/json", `{"id":"u1","type":"llm","customer":"pp","data":{"tokens":4}}`)
	require.Equal(t, 202, status, res)
	waitFor(t, 20*time.Second, "the postpaid renewal", func() bool {
		_, body, _ = p.request("GET", "/v1/subscriptions/"+id, "")
		return body["cycle"] != nil && body["cycle"].(float64) >= 1
	})
	assert.Equal(t, "4", body["last_cycle_usage"], "the usage summary of the cycle that ended")
	assert.Equal(t, "active", body["status"])
}
