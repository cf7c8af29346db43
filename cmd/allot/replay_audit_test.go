package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/rating"
)

// usagePartitioning places a (scope, customer) in the partition the usage stream stored its
// events under, escaped customer ids and several scopes included. (Written in review.)
func TestUsagePartitioningMatchesTheStream(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	us, err := js.Stream(ctx, bus.UsageStream)
	require.NoError(t, err)
	partitionOf, err := usagePartitioning(us.CachedInfo().Config)
	require.NoError(t, err)
	type key struct {
		scope    events.Scope
		customer string
	}
	var keys []key
	for _, sc := range []events.Scope{{Product: "acme", Env: "test"}, {Product: "acme", Env: "live"}, {Product: "b-2", Env: "x_y"}} {
		for _, c := range []string{"c1", "a.b@c", "ünï code", "~", "~7e", "with space", "x*y>z", "UPPER", "a~2eb"} {
			keys = append(keys, key{sc, c})
		}
	}
	for _, k := range keys {
		_, err := js.Publish(ctx, events.UsageSubject(k.scope.Product, k.scope.Env, k.customer), []byte(`{}`))
		require.NoError(t, err)
	}
	for i, k := range keys {
		m, err := us.GetMsg(ctx, uint64(i+1))
		require.NoError(t, err)
		want, ok := rating.SubjectPartition(m.Subject)
		require.True(t, ok, m.Subject)
		got, ok := partitionOf(k.scope, k.customer)
		require.True(t, ok)
		assert.Equal(t, want, got, "%+v stored as %s", k, m.Subject)
	}
}

// With --verify, replay folds the ledger on past the last comparison for rating's audit, and
// still reports the digest and sequence it compared. (Found in review: it printed the later
// ones.)
func TestVerifyReportsTheDigestItCompared(t *testing.T) {
	js := bustest.JetStream(t)
	nc := js.Conn()
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grant := func(blk string) {
		b, _ := json.Marshal(events.CreditsGranted{Block: blk, Customer: "c", Amount: events.MicroPerCredit, Source: "wallet", Priority: 100, EffectiveAt: at, At: at})
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", "c"), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeCreditsGranted}}})
		require.NoError(t, err)
	}
	grant("blk_1")
	grant("blk_2")
	l := projector.NewLedger()
	_, err := projector.Rebuild(ctx, js, bus.LedgerStream, l, 2, nil)
	require.NoError(t, err)
	b, err := json.Marshal(l)
	require.NoError(t, err)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	_, err = store.PutBytes(ctx, projector.SnapshotName, b)
	require.NoError(t, err)
	grant("blk_3") // written after the ledger snapshot: LedgerEnd is 3

	res, err := replayLedger(ctx, nc, js, true, slog.New(slog.NewTextHandler(io.Discard, nil)), 3, func(projector.AppliedRated) {})
	require.NoError(t, err)
	require.True(t, *res.Match)
	assert.EqualValues(t, 2, res.Seq, "the sequence compared")
	assert.Equal(t, res.Expected, res.Digest, "the digest printed is the one compared")
}
