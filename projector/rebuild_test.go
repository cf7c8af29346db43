package projector

import (
	"context"
	"encoding/json"
	"fmt"
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

// Rebuild, with its two goroutines, folds exactly what folding the stream one message at a
// time folds: to the end, and to a target in the middle of a batch.
func TestRebuildMatchesASequentialFold(t *testing.T) {
	emb := bustest.Start(t)
	js := bustest.Connect(t, emb)
	ctx := context.Background()

	// 1,000 entries (not a multiple of the batch size) over 37 customers: grants, then debits
	// that burn them and run into overage.
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	const total = 1000
	for i := 1; i <= total; i++ {
		c := fmt.Sprintf("cust-%d", i%37)
		typ, v := events.TypeUsageRated, any(events.UsageRated{Customer: c, FirstSeq: uint64(i), LastSeq: uint64(i),
			Debits: []events.UsageDebited{{ID: fmt.Sprint("d", i), Customer: c, UsageSeq: uint64(i), Amount: events.Credits(1000 + i), EventTime: t0.Add(time.Duration(i) * time.Second)}}})
		if i%10 == 1 {
			typ, v = events.TypeCreditsGranted, events.CreditsGranted{Block: fmt.Sprint("blk_", i), Customer: c, Amount: 5000, Source: "topup", Priority: 40, EffectiveAt: t0, At: t0}
		}
		data, err := json.Marshal(v)
		require.NoError(t, err)
		_, err = js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "live", c), Data: data, Header: nats.Header{events.HeaderType: []string{typ}}})
		require.NoError(t, err)
	}

	sequentials := 0 // each leaves its consumer
	sequential := func(target uint64) string {
		sequentials++
		l := NewLedger()
		cons, err := js.OrderedConsumer(ctx, bus.LedgerStream, jetstream.OrderedConsumerConfig{})
		require.NoError(t, err)
		for seq := uint64(0); seq < target; {
			m, err := cons.Next()
			require.NoError(t, err)
			md, err := m.Metadata()
			require.NoError(t, err)
			seq = md.Sequence.Stream
			require.NoError(t, l.ApplyMsg(seq, m.Subject(), m.Headers(), m.Data()))
		}
		_, d, err := l.Digest()
		require.NoError(t, err)
		return d
	}
	for _, target := range []uint64{total, 700} {
		l := NewLedger()
		var reported uint64
		n, err := Rebuild(ctx, js, bus.LedgerStream, l, target, func(seq uint64) { reported = seq })
		require.NoError(t, err)
		assert.Equal(t, int(target), n)
		assert.Equal(t, target, l.Seq())
		assert.Equal(t, target, reported, "progress reaches the target")
		seq, d, err := l.Digest()
		require.NoError(t, err)
		assert.Equal(t, target, seq)
		assert.Equal(t, sequential(target), d, "target %d", target)
		a, ok := l.Account(events.Scope{Product: "acme", Env: "live"}, "cust-5")
		require.True(t, ok)
		assert.NotZero(t, a.Debited)
	}
	// Rebuilding in steps (as replay --verify does, stopping at each live process's sequence)
	// folds each entry once and ends where one rebuild does.
	l := NewLedger()
	for _, step := range []struct{ target, folded uint64 }{{300, 300}, {300, 0}, {256, 0}, {701, 401}, {total, total - 701}} {
		n, err := Rebuild(ctx, js, bus.LedgerStream, l, step.target, nil)
		require.NoError(t, err)
		assert.Equal(t, int(step.folded), n, "to %d", step.target)
		seq, d, err := l.Digest()
		require.NoError(t, err)
		assert.Equal(t, max(step.target, 300), seq)
		if step.target == 701 {
			assert.Equal(t, sequential(701), d)
		}
	}
	_, d, err := l.Digest()
	require.NoError(t, err)
	assert.Equal(t, sequential(total), d)

	n, err := Rebuild(ctx, js, bus.LedgerStream, NewLedger(), 0, nil)
	require.NoError(t, err)
	assert.Zero(t, n, "an empty stream is an empty fold")

	// Each rebuild deleted its consumer: left, one lingered on the stream for five minutes.
	stream, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	consumers := func() int {
		info, err := stream.Info(ctx)
		require.NoError(t, err)
		return info.State.Consumers
	}
	assert.Eventually(t, func() bool { return consumers() == sequentials }, 5*time.Second, 10*time.Millisecond,
		"only sequential's %d consumers are left", sequentials)
}

// A target the stream cannot reach (its messages are gone) is an error after a while, not a
// replay that waits for ever.
func TestRebuildGivesUpOnAnUnreachableTarget(t *testing.T) {
	defer func(d time.Duration) { rebuildStall = d }(rebuildStall)
	rebuildStall = 300 * time.Millisecond
	js := bustest.Connect(t, bustest.Start(t))
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "live", "c"), Data: []byte(`{}`),
			Header: nats.Header{events.HeaderType: []string{"future.type.v9"}}})
		require.NoError(t, err)
	}
	st, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	require.NoError(t, st.DeleteMsg(ctx, 1))
	require.NoError(t, st.DeleteMsg(ctx, 2))
	require.NoError(t, st.DeleteMsg(ctx, 3))
	_, err = Rebuild(ctx, js, bus.LedgerStream, NewLedger(), 3, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "toward sequence 3")
	assert.ErrorIs(t, err, bus.ErrStalled, "the error says the stream went quiet, not just that a context ended")
}

// A reader with a fold of its own starts from the projection's snapshot only when the
// snapshot is not past what the reader has dealt with.
func TestFoldFromTheSnapshot(t *testing.T) {
	js := bustest.Connect(t, bustest.Start(t))
	ctx := context.Background()
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)

	l, from, err := FoldFrom(ctx, store, 100)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), from, "no snapshot yet")
	assert.Zero(t, l.Seq())

	snap := NewLedger()
	grant, _ := json.Marshal(events.CreditsGranted{Block: "blk_1", Customer: "c", Amount: 5, Source: "topup", Priority: 40, At: time.Now()})
	require.NoError(t, snap.Apply(40, events.LedgerSubject("acme", "live", "c"), events.TypeCreditsGranted, grant))
	b, err := json.Marshal(snap)
	require.NoError(t, err)
	_, err = store.PutBytes(ctx, SnapshotName, b)
	require.NoError(t, err)

	l, from, err = FoldFrom(ctx, store, 100)
	require.NoError(t, err)
	assert.Equal(t, uint64(41), from)
	assert.Equal(t, events.Credits(5), l.BalanceAt(events.Scope{Product: "acme", Env: "live"}, "c", time.Now().Add(time.Hour)))

	for _, upTo := range []uint64{39, 0} {
		l, from, err = FoldFrom(ctx, store, upTo)
		require.NoError(t, err)
		assert.Equal(t, uint64(1), from, "the snapshot is past %d: fold from the start", upTo)
		assert.Zero(t, l.Seq())
	}
	l, from, err = FoldFrom(ctx, nil, 100)
	require.NoError(t, err)
	assert.Equal(t, uint64(1), from)
}

func TestSnapshotWait(t *testing.T) {
	for _, c := range []struct{ every, took, want time.Duration }{
		{10 * time.Second, 50 * time.Millisecond, 10 * time.Second},
		{10 * time.Second, 500 * time.Millisecond, 10 * time.Second},
		{10 * time.Second, 2 * time.Second, 40 * time.Second}, // a large projection: at most 5% of a core
		{time.Second, 100 * time.Millisecond, 2 * time.Second},
	} {
		if got := snapshotWait(c.every, c.took); got != c.want {
			t.Errorf("snapshotWait(%s, %s) = %s, want %s", c.every, c.took, got, c.want)
		}
	}
}
