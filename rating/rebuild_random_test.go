package rating

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// changingCfg is a configuration whose rating of an event may bring a newer configuration (a
// change arriving mid-batch), when hooks are on.
type changingCfg struct {
	fakeConfig
	on func()
}

func (c changingCfg) MetersFor(scope events.Scope, typ string) []events.Meter {
	c.on()
	return c.fakeConfig.MetersFor(scope, typ)
}

// A worker killed (lease lost: nothing saved on stop) or stopped at random points, while
// configurations come mid-batch and usage flows, always leaves a snapshot that Rebuild, on the
// recorded views, reproduces byte for byte. (Written in review; six seeds ran clean, one under
// -race. ALLOT_TEST_SEED picks another.)
func TestKillsAndConfigChangesAlwaysRebuildToTheSnapshot(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	seed, _ := strconv.ParseUint(os.Getenv("ALLOT_TEST_SEED"), 10, 64)
	rng := rand.New(rand.NewPCG(7+seed, 11))
	var rngMu sync.Mutex
	roll := func(n int) int { rngMu.Lock(); defer rngMu.Unlock(); return rng.IntN(n) }
	bases := []fakeConfig{
		{},
		config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1"), EffectiveFrom: t0.Add(-time.Hour)}),
		config(events.AggCount, events.Rule{Model: events.ModelGraduated, EffectiveFrom: t0.Add(-time.Hour),
			Tiers: []events.Tier{{UpTo: decp("5"), UnitPrice: dec("1")}, {UnitPrice: dec("0.5")}}}),
		config(events.AggMax, events.Rule{Model: events.ModelPerUnit, Price: decp("2"), EffectiveFrom: t0.Add(-time.Hour)}),
	}
	var hooks atomic.Bool
	hooks.Store(true)
	src := &versionedConfig{}
	var next atomic.Uint64
	var wrap func(i int) Config
	wrap = func(i int) Config {
		return changingCfg{fakeConfig: bases[i%len(bases)], on: func() {
			if hooks.Load() && roll(5) == 0 {
				s := next.Add(1)
				src.add(s, wrap(int(s)))
			}
		}}
	}
	next.Store(1)
	src.add(1, wrap(1))

	var seqs []uint64
	publish := func(n int) {
		for i := 0; i < n; i++ {
			id := "e" + strconv.Itoa(len(seqs)+1)
			seqs = append(seqs, publishUsage(t, js, id, strconv.Itoa(1+roll(9))))
		}
	}
	publish(3)
	partition := partitionOf(t, js, seqs[0])

	check := func(life int) {
		t.Helper()
		st := storedState(t, store, partition)
		if st == nil {
			return
		}
		views, recs := ratingViews(t, js)
		hooks.Store(false)
		defer hooks.Store(true)
		rebuilt, err := Rebuild(ctx, js, bus.UsageStream, map[int]uint64{partition: st.Seq}, views, src.RatingView, RebuildHooks{})
		require.NoError(t, err)
		r := rebuilt[partition]
		require.NoError(t, r.Err, "life %d", life)
		r.State.ConfigSeq, r.State.ConfigKnown = st.ConfigSeq, st.ConfigKnown
		want, _ := json.Marshal(st)
		got, _ := json.Marshal(r.State)
		require.Equal(t, string(want), string(got), "life %d: records %v", life, recs)
	}
	randomLives(t, js, store, src, partition, 14, roll, publish, func() uint64 { return seqs[len(seqs)-1] }, check)
	_, recs := ratingViews(t, js)
	t.Logf("%d events, %d configurations, %d view records", len(seqs), next.Load(), len(recs))
	require.Greater(t, next.Load(), uint64(3), "configurations came while rating")
}

// randomLives runs a partition's worker for lives lives: each rates what publish adds while it
// runs and is then killed (nothing saved, as after a lost lease) or stopped, at random, and
// check runs after it. A last life rates everything up to lastSeq and stops cleanly, then
// check(99); it returns that worker.
func randomLives(t *testing.T, js jetstream.JetStream, store jetstream.ObjectStore, src ConfigSource, partition, lives int,
	roll func(int) int, publish func(int), lastSeq func() uint64, check func(life int)) *Worker {
	t.Helper()
	ctx := context.Background()
	for life := 0; life < lives; life++ {
		w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Source: src, ViewStream: bus.ConfigStream,
			Partition: partition, Batch: 1 + roll(6), Linger: 15 * time.Millisecond, SnapshotEvery: time.Duration(10+roll(40)) * time.Millisecond,
			Log: slog.New(slog.DiscardHandler)}
		wctx, cancel := context.WithCancelCause(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(wctx) }()
		for k := roll(4); k >= 0; k-- {
			publish(roll(12))
			time.Sleep(time.Duration(roll(60)) * time.Millisecond)
		}
		var cause error
		if roll(3) > 0 {
			cause = ErrLeaseLost // as a kill: nothing saved on the way out
		}
		cancel(cause)
		<-done
		check(life)
	}
	w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Source: src, ViewStream: bus.ConfigStream,
		Partition: partition, Batch: 3, Linger: 15 * time.Millisecond, SnapshotEvery: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); w.Run(wctx) }()
	require.Eventually(t, func() bool { return w.Counters.Seq.Load() >= lastSeq() }, 20*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	check(99)
	return w
}

// storedState is a partition's stored snapshot; nil when there is none yet.
func storedState(t *testing.T, store jetstream.ObjectStore, partition int) *State {
	t.Helper()
	b, err := store.GetBytes(context.Background(), "rating/p"+strconv.Itoa(partition))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil
	}
	require.NoError(t, err)
	st := NewState()
	require.NoError(t, json.Unmarshal(b, st))
	return st
}
