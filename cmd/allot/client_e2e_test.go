package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/client"
)

// TestGoClient drives every call of the Go client against a real server.
func TestGoClient(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 0.01, effective_from: 2020-01-01T00:00:00Z}
features:
  chat: {rule: price}
quotas:
  rpm: {meter: requests, limit: 2, period: {unit: minute}}
`)
	p := startServe(t, t.TempDir(), "--config", cfg)
	c := client.New(p.httpURL, testKey)
	ctx := context.Background()

	b, err := c.Grant(ctx, "cli", client.Grant{Amount: "10", Source: "promo"})
	require.NoError(t, err)
	assert.Equal(t, "10", b.Remaining)
	res, err := c.SendEvents(ctx, []client.Event{{ID: "k1", Type: "llm", Customer: "cli", Data: map[string]any{"tokens": 100}}})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Accepted)

	// Straight onto JetStream: the same dedup key as HTTP.
	nc, err := nats.Connect(p.natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	require.NoError(t, client.PublishEvent(ctx, js, "acme", "test", client.Event{ID: "k2", Type: "llm", Customer: "cli", Data: map[string]any{"tokens": 100}}))
	res, err = c.SendEvents(ctx, []client.Event{{ID: "k2", Type: "llm", Customer: "cli", Data: map[string]any{"tokens": 100}}})
	require.NoError(t, err)
	assert.Equal(t, 1, res.Duplicates)

	waitFor(t, 10*time.Second, "the debits", func() bool {
		bal, err := c.Balance(ctx, "cli")
		return err == nil && bal.Balance == "8"
	})
	e, err := c.CheckEntitlement(ctx, "cli", "chat", "500")
	require.NoError(t, err)
	assert.True(t, e.Allowed)
	assert.Equal(t, "5", e.EstimatedCost)
	e, err = c.CheckEntitlement(ctx, "cli", "chat", "1000")
	require.NoError(t, err)
	assert.False(t, e.Allowed)

	r, err := c.Reserve(ctx, "cli", "3", time.Minute)
	require.NoError(t, err)
	_, err = c.Reserve(ctx, "cli", "6", 0)
	assert.True(t, errors.Is(err, client.ErrInsufficientCredits), "%v", err)
	r, err = c.Release(ctx, r.ID)
	require.NoError(t, err)
	assert.Equal(t, "released", r.Status)
	r, err = c.Reserve(ctx, "cli", "3", 0)
	require.NoError(t, err)
	r, err = c.Commit(ctx, r.ID, "")
	require.NoError(t, err)
	assert.Equal(t, "committed", r.Status)

	for i := 0; i < 2; i++ {
		_, err = c.QuotaIncrement(ctx, "rpm", "cli", "")
		require.NoError(t, err)
	}
	_, err = c.QuotaIncrement(ctx, "rpm", "cli", "")
	assert.True(t, errors.Is(err, client.ErrQuotaExceeded), "%v", err)
	q, err := c.QuotaCheck(ctx, "rpm", "cli", "")
	require.NoError(t, err)
	assert.Equal(t, "2", q.Used)
	_, err = c.Balance(ctx, "nobody")
	require.NoError(t, err)
	_, err = client.New(p.httpURL, "ak_test_wrong_key_1").Balance(ctx, "cli")
	var prob *client.Problem
	require.ErrorAs(t, err, &prob)
	assert.Equal(t, 401, prob.Status)
}
