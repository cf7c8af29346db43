package rating

import (
	"context"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
	partition := partitionOf(t, js, publishUsage(t, js, "e1", "3"))
	for _, cause := range []error{ErrLeaseLost, nil} {
		w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Config: config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")}),
			Partition: partition, SnapshotEvery: time.Hour, Log: slog.New(slog.DiscardHandler)}
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

// A process that was paused past its lease's TTL wakes with its worker still running while
// another process owns the partition; until the pool's next renewal (up to a second) the worker
// went on rating — beside the new owner, each on a share of the events and so on a share of the
// period's quantity, and each able to delete the other's consumer (found in review). It now
// renews the lease right before writing a batch's debits, and writes nothing once it is lost.
func TestAWorkerWhoseLeaseWasTakenWritesNothing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := bustest.JetStream(t)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	leasesA, err := bus.EnsureLeases(ctx, js, bus.StreamOptions{}, "process-a")
	require.NoError(t, err)
	leasesB, err := bus.EnsureLeases(ctx, js, bus.StreamOptions{}, "process-b")
	require.NoError(t, err)
	partition := partitionOf(t, js, publishUsage(t, js, "before", "1"))

	cfg := config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	const parts = 8
	workers := make([]*Worker, parts)
	for p := range workers {
		workers[p] = &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Config: cfg, Partition: p,
			Linger: 5 * time.Millisecond, SnapshotEvery: time.Hour, Log: slog.New(slog.DiscardHandler)}
	}
	pool := &Pool{Partitions: parts, Leases: leasesA, KV: leasesA.Bucket(), Member: "process-a", Log: slog.New(slog.DiscardHandler),
		NewWorker: func(p int) *Worker { return workers[p] }}
	go pool.Run(ctx)
	w := workers[partition]
	require.Eventually(t, func() bool { return w.Counters.Events.Load() >= 1 }, 10*time.Second, 5*time.Millisecond)
	ls, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	entries := func() uint64 {
		info, err := ls.Info(ctx)
		require.NoError(t, err)
		return info.State.Msgs
	}
	require.Eventually(t, func() bool { return entries() == 1 }, 5*time.Second, 5*time.Millisecond)

	// Process A's lease lapses (it was paused) and process B takes the partition.
	kv := leasesA.Bucket()
	require.NoError(t, kv.Purge(ctx, "rating.p"+strconv.Itoa(partition)))
	_, ok, err := leasesB.Acquire(ctx, "rating.p"+strconv.Itoa(partition))
	require.NoError(t, err)
	require.True(t, ok)
	for i := 0; i < 20; i++ {
		publishUsage(t, js, "after-"+strconv.Itoa(i), "1")
	}
	time.Sleep(1500 * time.Millisecond) // past A's next renewal, which stops its worker
	assert.EqualValues(t, 1, entries(), "A wrote debits for a partition it no longer owned")
	assert.EqualValues(t, 1, w.Counters.Entries.Load())
}

// publishUsage publishes usage event id of customer c1 (tokens as given) and returns its
// stream sequence.
func publishUsage(t *testing.T, js jetstream.JetStream, id, qty string) uint64 {
	t.Helper()
	data, err := usage(id, "c1", t0, tokens(qty)).Encode()
	require.NoError(t, err)
	ack, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: events.UsageSubject(sc.Product, sc.Env, "c1"), Data: data,
		Header: nats.Header{events.HeaderType: []string{events.TypeUsageRecorded}, events.HeaderMsgID: []string{id}}})
	require.NoError(t, err)
	return ack.Sequence
}

// partitionOf is the usage partition the message at seq was stored in.
func partitionOf(t *testing.T, js jetstream.JetStream, seq uint64) int {
	t.Helper()
	us, err := js.Stream(context.Background(), bus.UsageStream)
	require.NoError(t, err)
	m, err := us.GetMsg(context.Background(), seq)
	require.NoError(t, err)
	addr, err := events.ParseUsageSubject(m.Subject)
	require.NoError(t, err)
	return addr.Partition
}

// A partition that goes quiet saves what it rated once a snapshot is due, without waiting for
// a next batch: its snapshot lagged for as long as it stayed quiet (a restart re-rated all of
// it, and replay checked only up to it).
func TestAQuietWorkerSavesWhatItRated(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Config: config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")}),
		SnapshotEvery: time.Second, Log: slog.New(slog.DiscardHandler)}
	seq := publishUsage(t, js, "e1", "3")
	w.Partition = partitionOf(t, js, seq)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	defer func() { cancel(); <-done }()
	require.Eventually(t, func() bool {
		st, err := w.LoadState(ctx)
		return err == nil && st.Seq == seq
	}, 10*time.Second, 50*time.Millisecond, "the snapshot covers the event while the worker runs on, idle")
}
