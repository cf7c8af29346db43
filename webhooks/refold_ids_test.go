package webhooks

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// The notifier publishes an entry's notifications and dies before saving its position; while
// it is down an admin adds a second endpoint with a low-balance threshold. The re-fold writes
// the entry's credits.depleted under the same id (it moved in the list, got a new id, and was
// delivered twice), and the new endpoint's credits.low is its own.
func TestRefoldAfterEndpointAddedKeepsIDs(t *testing.T) {
	f := newLedgerFixture(t)
	ctx := context.Background()
	f.grant(t, 10)
	before := f.seq
	f.debit(t, 1, 12) // 10 → -2: low (threshold 5) and depleted
	thr := cr(5)
	a := events.WebhookEndpoint{ID: "a", Events: []string{"*"}, LowBalanceThreshold: &thr}
	b := events.WebhookEndpoint{ID: "b", Events: []string{"*"}, LowBalanceThreshold: &thr}
	run := func(eps endpointList) {
		rctx, cancel := context.WithCancel(ctx)
		n := &Notifier{JS: f.js, KV: f.kv, Endpoints: eps, LedgerStream: bus.LedgerStream, Snapshots: f.snaps, Log: slog.New(slog.DiscardHandler)}
		done := make(chan struct{})
		go func() { defer close(done); n.Run(rctx) }()
		require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= f.seq }, 10*time.Second, 10*time.Millisecond)
		cancel()
		<-done
	}
	run(endpointList{a})
	// The crash: the position is still the one before the debit.
	_, err := f.kv.Put(ctx, notifierKey, []byte(strconv.FormatUint(before, 10)))
	require.NoError(t, err)
	run(endpointList{a, b})
	depleted := 0
	for _, n := range f.notes(t) {
		if n.Type == events.HookCreditsDepleted {
			depleted++
		}
	}
	assert.Equal(t, 1, depleted, "%+v", f.notes(t))
	lows := map[string]int{}
	for _, n := range f.notes(t) {
		if n.Type == events.HookCreditsLow {
			lows[n.Endpoint]++
		}
	}
	assert.Equal(t, map[string]int{"a": 1, "b": 1}, lows)
}
