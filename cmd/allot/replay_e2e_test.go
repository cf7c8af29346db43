package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
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
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price:
    meter: tokens
    model: volume
    effective_from: 2026-05-01T00:00:00Z
    tiers: [{up_to: 100, unit_price: 1}, {up_to: 200, unit_price: 0.5}, {unit_price: 0.1}]
`)
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
	type liveDebit struct {
		customer string
		d        events.UsageDebited
	}
	var live []liveDebit
	ledger, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	for len(live) < 60 {
		require.NoError(t, ctx.Err(), "rating did not catch up")
		time.Sleep(50 * time.Millisecond)
		info, err := ledger.Info(ctx)
		require.NoError(t, err)
		live = live[:0]
		for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
			m, err := ledger.GetMsg(ctx, seq)
			require.NoError(t, err)
			require.Equal(t, events.TypeUsageRated, m.Header.Get(events.HeaderType))
			var r events.UsageRated
			require.NoError(t, json.Unmarshal(m.Data, &r))
			for _, d := range r.Debits {
				live = append(live, liveDebit{r.Customer, d})
			}
		}
	}
	versions := map[string]int{}
	for _, ld := range live {
		d := ld.d
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
	for _, ld := range live {
		b, err := json.Marshal(ld.d)
		require.NoError(t, err)
		got[ld.customer] = append(got[ld.customer], append(b, '\n')...)
	}
	for c := range replayed {
		assert.Equal(t, string(replayed[c]), string(got[c]), "customer %s", c)
	}
	assert.Len(t, got, len(replayed))
}

// TestLedgerAPIPagesEachItemOnce pages a customer's ledger in small pages and checks that
// every debit appears once, in order, across page boundaries inside rating batches.
func TestLedgerAPIPagesEachItemOnce(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 1, effective_from: 2020-01-01T00:00:00Z}
`)
	p := startServe(t, t.TempDir(), "--config", cfg)
	var evs []string
	for i := 0; i < 23; i++ {
		evs = append(evs, fmt.Sprintf(`{"id":"p%d","type":"llm","customer":"solo","data":{"tokens":%d}}`, i, i+1))
	}
	// Two requests, so rating is likely to write more than one batch.
	for _, part := range [][]string{evs[:9], evs[9:]} {
		status, res := p.post("/v1/events", "application/json", "["+strings.Join(part, ",")+"]")
		require.Equal(t, 202, status, res)
	}
	var seen []string
	cursor := ""
	for page := 0; page < 20; page++ {
		url := p.httpURL + "/v1/customers/solo/ledger?limit=4"
		if cursor != "" {
			url += "&cursor=" + cursor
		}
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		var body struct {
			Data []struct {
				Type  string          `json:"type"`
				Entry json.RawMessage `json:"entry"`
			} `json:"data"`
			NextCursor *string `json:"next_cursor"`
		}
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
		resp.Body.Close()
		for _, e := range body.Data {
			var d events.UsageDebited
			require.NoError(t, json.Unmarshal(e.Entry, &d))
			seen = append(seen, d.EventID)
		}
		if body.NextCursor == nil {
			if len(seen) < 23 { // rating may still be writing; start over
				time.Sleep(100 * time.Millisecond)
				seen, cursor = nil, ""
				continue
			}
			break
		}
		cursor = *body.NextCursor
	}
	var want []string
	for i := 0; i < 23; i++ {
		want = append(want, fmt.Sprintf("p%d", i))
	}
	assert.Equal(t, want, seen)
}
