package projector

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// A ledger snapshot an older fold wrote is passed over: the projection is folded from the first
// entry again. Restored, it disagreed with a replay — a postpaid cycle's usage kept before
// credit-backs were netted out billed a cycle that used 10 as −39.5.
func TestSnapshotOfAnOlderFoldIsPassedOver(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	l := NewLedger()
	g, err := json.Marshal(events.CreditsGranted{Block: "b", Customer: "c", Amount: 5 * cr, Source: "wallet", Priority: 100, EffectiveAt: time.Unix(0, 0).UTC(), At: time.Unix(0, 0).UTC()})
	require.NoError(t, err)
	require.NoError(t, l.ApplyMsg(1, events.LedgerSubject("acme", "test", "c"), map[string][]string{events.HeaderType: {events.TypeCreditsGranted}}, g))
	b, err := json.Marshal(l)
	require.NoError(t, err)

	var snap map[string]any
	require.NoError(t, json.Unmarshal(b, &snap))
	snap["format"] = 1
	old, err := json.Marshal(snap)
	require.NoError(t, err)
	_, err = store.PutBytes(ctx, SnapshotName, old)
	require.NoError(t, err)
	got, err := LoadLedger(ctx, store)
	require.NoError(t, err)
	assert.EqualValues(t, 0, got.Seq(), "folded from the first entry")

	_, err = store.PutBytes(ctx, SnapshotName, b)
	require.NoError(t, err)
	got, err = LoadLedger(ctx, store)
	require.NoError(t, err)
	assert.EqualValues(t, 1, got.Seq(), "this fold's own snapshot is restored")
}
