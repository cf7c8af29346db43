package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/rating"
)

// TestRuleChangeMidPeriodReplays: a new rule version takes effect mid-period; events before
// its effective_from keep the old price, and rating the whole usage stream again from
// scratch, with the configuration as it is at the end, writes byte-identical debits.
func TestRuleChangeMidPeriodReplays(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "allot.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte(`keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price:
    meter: tokens
    model: volume
    effective_from: 2026-05-01T00:00:00Z
    tiers: [{up_to: 100, unit_price: 1}, {up_to: 200, unit_price: 0.5}, {unit_price: 0.1}]
`), 0o600))
	p := startServe(t, t.TempDir(), "--config", cfg)
	put := func(path, body string) {
		req, _ := http.NewRequest("PUT", p.httpURL+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		require.Equal(t, 201, resp.StatusCode, string(b))
	}
	put("/v1/rules/price", `{"meter":"tokens","model":"volume","effective_from":"2026-05-15T00:00:00Z","tiers":[{"up_to":"100","unit_price":"2"},{"up_to":"200","unit_price":"1"},{"unit_price":"0.2"}]}`)

	var evs []string
	for i := 0; i < 60; i++ {
		day := 5 + (i*7)%20 // days 5..24 of May, mixed order around the 15th
		evs = append(evs, fmt.Sprintf(`{"id":"r%d","type":"llm","customer":"c%d","time":"2026-05-%02dT12:00:00Z","data":{"tokens":"%d.5"}}`, i, i%3, day, 10+i%40))
	}
	status, res := p.post("/v1/events", "application/json", "["+strings.Join(evs, ",")+"]")
	require.Equal(t, 202, status, res)

	nc, err := nats.Connect(p.natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Live debits, from the ledger stream, once rating has caught up.
	var live []jetstream.RawStreamMsg
	ledger, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	for {
		info, err := ledger.Info(ctx)
		require.NoError(t, err)
		if info.State.Msgs >= 60 {
			for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
				m, err := ledger.GetMsg(ctx, seq)
				require.NoError(t, err)
				live = append(live, *m)
			}
			break
		}
		require.NoError(t, ctx.Err(), "rating did not catch up")
		time.Sleep(50 * time.Millisecond)
	}
	versions := map[string]int{}
	for _, m := range live {
		var d events.UsageDebited
		require.NoError(t, json.Unmarshal(m.Data, &d))
		if d.EventTime.Before(time.Date(2026, 5, 15, 0, 0, 0, 0, time.UTC)) {
			assert.Equal(t, 1, d.RuleVersion, "event %s before the change", d.EventID)
		} else {
			assert.Equal(t, 2, d.RuleVersion, "event %s after the change", d.EventID)
		}
		versions[d.EventID] = d.RuleVersion
	}
	require.Len(t, versions, 60)

	// Replay: the final configuration, a fresh state, the whole usage stream.
	cat := catalog.New()
	fol := catalog.NewFollower(js, bus.ConfigStream, cat, slog.New(slog.DiscardHandler))
	go fol.Run(ctx)
	require.NoError(t, fol.Sync(ctx))
	usage, err := js.Stream(ctx, bus.UsageStream)
	require.NoError(t, err)
	uinfo, err := usage.Info(ctx)
	require.NoError(t, err)
	states := map[int]*rating.State{}
	replayed := map[string][]byte{} // by customer, concatenated in order
	for seq := uint64(1); seq <= uinfo.State.LastSeq; seq++ {
		m, err := usage.GetMsg(ctx, seq)
		require.NoError(t, err)
		addr, err := events.ParseUsageSubject(m.Subject)
		require.NoError(t, err)
		ev, err := events.DecodeUsage(m.Data)
		require.NoError(t, err)
		if states[addr.Partition] == nil {
			states[addr.Partition] = rating.NewState()
		}
		out, err := states[addr.Partition].Rate(seq, events.Scope{Product: addr.Product, Env: addr.Env}, ev, cat)
		require.NoError(t, err)
		for _, d := range out.Debits {
			b, err := json.Marshal(d)
			require.NoError(t, err)
			replayed[d.Customer] = append(replayed[d.Customer], append(b, '\n')...)
		}
	}
	got := map[string][]byte{}
	for _, m := range live {
		addr, err := events.ParseLedgerSubject(m.Subject)
		require.NoError(t, err)
		got[addr.Customer] = append(got[addr.Customer], append(m.Data, '\n')...)
	}
	for c := range replayed {
		assert.Equal(t, string(replayed[c]), string(got[c]), "customer %s", c)
	}
	assert.Len(t, got, len(replayed))
}
