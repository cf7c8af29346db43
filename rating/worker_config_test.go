package rating

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// versionedConfig is a ConfigSource: configurations by sequence.
type versionedConfig struct {
	mu   sync.Mutex
	seqs []uint64
	cfgs []Config
}

func (v *versionedConfig) add(seq uint64, c Config) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.seqs, v.cfgs = append(v.seqs, seq), append(v.cfgs, c)
}

func (v *versionedConfig) RatingSeq() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.seqs[len(v.seqs)-1]
}

func (v *versionedConfig) RatingView(seq uint64) (Config, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	var c Config = fakeConfig{}
	for i, s := range v.seqs {
		if s <= seq {
			c = v.cfgs[i]
		}
	}
	return c, nil
}

func (v *versionedConfig) WaitFor(context.Context, uint64) error { return nil }

// A worker killed after rating an event, before any snapshot after it, rates it again on the
// configuration it rated it on, not on the one in force at its restart: e1 was rated unmetered,
// a meter was defined, and the restarted worker charged e1 — which, without the kill, was
// never charged. Events published after the restart are rated on the new configuration.
func TestRestartedWorkerRatesOnTheConfigurationItRatedOn(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	publish := func(id string) uint64 { return publishUsage(t, js, id, "3") }
	seq1 := publish("e1")
	partition := partitionOf(t, js, seq1)

	src := &versionedConfig{}
	src.add(1, fakeConfig{}) // no meter: e1 is unmetered
	run := func(upTo uint64, cause error, then func() uint64) *Worker {
		w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Source: src, Partition: partition,
			SnapshotEvery: time.Hour, Log: slog.New(slog.DiscardHandler)}
		wctx, cancel := context.WithCancelCause(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(wctx) }()
		require.Eventually(t, func() bool { return w.Counters.Seq.Load() >= upTo }, 10*time.Second, 10*time.Millisecond)
		if then != nil {
			upTo = then()
			require.Eventually(t, func() bool { return w.Counters.Seq.Load() >= upTo }, 10*time.Second, 10*time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel(cause)
		<-done
		return w
	}
	w1 := run(seq1, ErrLeaseLost, nil) // rates e1 unmetered, then stops saving nothing after it (as a kill)
	assert.EqualValues(t, 1, w1.Counters.Unmetered.Load())
	src.add(2, config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1"), EffectiveFrom: t0.Add(-time.Hour)}))
	w2 := run(seq1, nil, func() uint64 { return publish("e2") })
	assert.EqualValues(t, 1, w2.Counters.Unmetered.Load(), "e1 again on the configuration it was rated on")
	assert.EqualValues(t, 1, w2.Counters.Debits.Load(), "e2, after the restart, on the new one")

	ls, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	info, err := ls.Info(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 1, info.State.Msgs, "one entry: e2's debit; e1 is charged by no kill")
}
