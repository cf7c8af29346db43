package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// With no live process and no stored snapshot, replay --verify has nothing to compare with and
// says so (exit 4); it folded nothing and reported "verify: OK" over a ledger it never read.
func TestVerifyWithNothingToCompareIsNotOK(t *testing.T) {
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -2})
	require.NoError(t, err)
	defer emb.Shutdown()
	nc, err := nats.Connect("", nats.InProcessServer(emb.Server))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, blk := range []string{"blk_1", "blk_2", "blk_3"} {
		b, _ := json.Marshal(events.CreditsGranted{Block: blk, Customer: "c", Amount: int64ToCredits(i + 1), Source: "wallet", Priority: 100, EffectiveAt: at, At: at})
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", "c"), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeCreditsGranted}}})
		require.NoError(t, err)
	}
	res, err := replayLedger(ctx, nc, js, true, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.Error(t, err)
	require.ErrorContains(t, err, "nothing to verify against")
	require.Nil(t, res.Match, "no verdict")
	// Without --verify it rebuilds the whole ledger.
	res, err = replayLedger(ctx, nc, js, false, slog.New(slog.NewTextHandler(io.Discard, nil)))
	require.NoError(t, err)
	require.EqualValues(t, 3, res.Entries)
}

func int64ToCredits(i int) events.Credits { return events.Credits(i) * events.MicroPerCredit }
