package bus

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A holder that was away past the lease's time to live (here: its key expired, as after a long
// pause, and another process took the lease) finds out at its next Confirm, before it does
// anything only the holder may do — not at the next periodic renewal, with its context still
// live until then. While it does hold the lease, Confirm keeps it: nobody else can take it.
func TestHoldConfirmFailsOnceAnotherProcessTookTheLease(t *testing.T) {
	js := embeddedJetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := EnsureLeases(ctx, js, StreamOptions{}, "a")
	require.NoError(t, err)
	b, err := EnsureLeases(ctx, js, StreamOptions{}, "b")
	require.NoError(t, err)

	holds := make(chan *Hold, 1)
	workCtx := make(chan context.Context, 1)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		a.HoldingConfirmed(ctx, "sink", slog.New(slog.DiscardHandler), func(wctx context.Context, h *Hold) error {
			holds <- h
			workCtx <- wctx
			<-wctx.Done()
			return nil
		})
	}()
	h := <-holds
	wctx := <-workCtx
	require.NoError(t, h.Confirm(ctx), "the holder confirms its lease")
	_, ok, err := b.Acquire(ctx, "sink")
	require.NoError(t, err)
	require.False(t, ok, "a confirmed lease is nobody else's")

	// The key expires (a pause past LeaseTTL, shortened here by deleting it) and b takes it.
	require.NoError(t, a.Bucket().Delete(ctx, "sink"))
	_, ok, err = b.Acquire(ctx, "sink")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, wctx.Err(), "the periodic renewal has not noticed yet")
	err = h.Confirm(ctx)
	require.Error(t, err, "a's Confirm must fail: b holds the lease")
	assert.Error(t, h.Confirm(ctx), "and stays failed")
	select {
	case <-wctx.Done():
	case <-time.After(2 * LeaseTTL):
		t.Fatal("the lost lease's work was not stopped")
	}
	e, err := b.Bucket().Get(ctx, "sink")
	require.NoError(t, err)
	assert.Equal(t, "b", string(e.Value()), "a's stopping does not release b's lease")
	cancel()
	<-stopped
}
