package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// With no live process and no stored snapshot, replay --verify has nothing to compare with and
// says so (exit 4); it folded nothing and reported "verify: OK" over a ledger it never read.
func TestVerifyWithNothingToCompareIsNotOK(t *testing.T) {
	js := bustest.JetStream(t) // allot's streams on an embedded server of the test's own
	nc := js.Conn()
	ctx := context.Background()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, blk := range []string{"blk_1", "blk_2", "blk_3"} {
		b, _ := json.Marshal(events.CreditsGranted{Block: blk, Customer: "c", Amount: events.Credits(i+1) * events.MicroPerCredit, Source: "wallet", Priority: 100, EffectiveAt: at, At: at})
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", "c"), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeCreditsGranted}}})
		require.NoError(t, err)
	}
	res, err := replayLedger(ctx, nc, js, true, slog.New(slog.NewTextHandler(io.Discard, nil)), 0, nil)
	require.Error(t, err)
	require.ErrorContains(t, err, "nothing to verify against")
	require.Nil(t, res.Match, "no verdict")
	// Without --verify it rebuilds the whole ledger.
	res, err = replayLedger(ctx, nc, js, false, slog.New(slog.NewTextHandler(io.Discard, nil)), 0, nil)
	require.NoError(t, err)
	require.EqualValues(t, 3, res.Entries)
}
