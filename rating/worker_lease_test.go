package rating

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// A worker stopped because its partition's lease was lost saves no snapshot on its way out:
// another process may own the partition and have saved a newer state, which an older one
// would overwrite. Stopped for any other reason (a hand-over, a shutdown), it saves.
func TestWorkerStoppedForALostLeaseSavesNothing(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	data, err := usage("e1", "c1", t0, tokens("3")).Encode()
	require.NoError(t, err)
	ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.UsageSubject(sc.Product, sc.Env, "c1"), Data: data,
		Header: nats.Header{events.HeaderType: []string{events.TypeUsageRecorded}, events.HeaderMsgID: []string{"e1"}}})
	require.NoError(t, err)
	s, err := js.Stream(ctx, bus.UsageStream)
	require.NoError(t, err)
	m, err := s.GetMsg(ctx, ack.Sequence)
	require.NoError(t, err)
	addr, err := events.ParseUsageSubject(m.Subject)
	require.NoError(t, err)
	for _, cause := range []error{ErrLeaseLost, nil} {
		w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Config: config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")}),
			Partition: addr.Partition, SnapshotEvery: time.Hour, Log: slog.New(slog.DiscardHandler)}
		wctx, cancel := context.WithCancelCause(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(wctx) }()
		require.Eventually(t, func() bool { return w.Counters.Events.Load() >= 1 }, 10*time.Second, 10*time.Millisecond)
		cancel(cause)
		<-done
		if cause == ErrLeaseLost {
			assert.Zero(t, w.Counters.Snapshots.Load(), "no snapshot after the lease was lost")
		} else {
			assert.EqualValues(t, 1, w.Counters.Snapshots.Load(), "a snapshot on an ordinary stop")
		}
	}
}
