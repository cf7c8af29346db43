package rating

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// The view records, read in order, say which view rated each usage event; a record replaces
// what earlier ones said about the events after its own point (a restart from an older
// snapshot re-rates those on the view it names).
func TestViewsSayWhichViewRatedEachEvent(t *testing.T) {
	v := NewViews()
	_, ok := v.At(0, 1)
	assert.False(t, ok, "nothing recorded")
	v.Add(events.RatingView{Partition: 0, After: 0, Config: 3})  // first start
	v.Add(events.RatingView{Partition: 0, After: 10, Config: 5}) // a newer view after event 10
	v.Add(events.RatingView{Partition: 0, After: 20, Config: 8}) // and after 20: its snapshot was never saved
	v.Add(events.RatingView{Partition: 0, After: 15, Config: 5}) // restart from the snapshot at 15
	v.Add(events.RatingView{Partition: 0, After: 30, Config: 8}) // the newer one again, after 30
	v.Add(events.RatingView{Partition: 1, After: 40, Config: 2}) // another partition, from an upgrade
	for _, c := range []struct {
		p        int
		seq, cfg uint64
		ok       bool
		until    uint64
	}{
		{0, 1, 3, true, 10}, {0, 10, 3, true, 10}, {0, 11, 5, true, 15}, {0, 16, 5, true, 30},
		{0, 21, 5, true, 30}, {0, 30, 5, true, 30}, {0, 31, 8, true, ^uint64(0)},
		{1, 40, 0, false, 40}, {1, 41, 2, true, ^uint64(0)}, {2, 1, 0, false, ^uint64(0)},
	} {
		cfg, ok := v.At(c.p, c.seq)
		assert.Equal(t, c.ok, ok, "p%d seq %d", c.p, c.seq)
		assert.Equal(t, c.cfg, cfg, "p%d seq %d", c.p, c.seq)
		assert.Equal(t, c.until, v.Until(c.p, c.seq), "p%d seq %d", c.p, c.seq)
	}
}

// hookConfig is a configuration that runs a hook at its n-th MetersFor: a configuration
// change arriving at a known point of a batch.
type hookConfig struct {
	fakeConfig
	rated *int
	n     int
	hook  func()
}

func (h hookConfig) MetersFor(scope events.Scope, typ string) []events.Meter {
	if *h.rated++; *h.rated == h.n {
		h.hook()
	}
	return h.fakeConfig.MetersFor(scope, typ)
}

// ratingViews reads the view records of the config stream.
func ratingViews(t *testing.T, js jetstream.JetStream) (*Views, []events.RatingView) {
	t.Helper()
	ctx := context.Background()
	s, err := js.Stream(ctx, bus.ConfigStream)
	require.NoError(t, err)
	info, err := s.Info(ctx)
	require.NoError(t, err)
	views, all := NewViews(), []events.RatingView(nil)
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		require.NoError(t, err)
		require.Equal(t, events.TypeRatingView, m.Header.Get(events.HeaderType))
		var r events.RatingView
		require.NoError(t, json.Unmarshal(m.Data, &r))
		views.Add(r)
		all = append(all, r)
	}
	return views, all
}

// A worker records each view before it rates on it — at its first start, when a newer
// configuration comes (mid-batch too: the batch ends there), and at a restart that names an
// older view than the last record — and Rebuild, rating the usage stream again on those
// views, gives the state the worker saved, byte for byte.
func TestRebuildOnTheRecordedViewsGivesTheWorkersState(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	metered := config(events.AggSum, events.Rule{Model: events.ModelGraduated, EffectiveFrom: t0.Add(-time.Hour), Period: mth,
		Tiers: []events.Tier{{UpTo: decp("5"), UnitPrice: dec("1")}, {UnitPrice: dec("0.5")}}})
	src := &versionedConfig{}
	src.add(1, fakeConfig{}) // no meter yet
	var seqs []uint64
	for _, id := range []string{"e1", "e2", "e3", "e4", "e5"} {
		seqs = append(seqs, publishUsage(t, js, id, "2"))
	}
	partition := partitionOf(t, js, seqs[0])
	// While e3 is rated, the meter is defined: e4 and e5, in the same fetch, are rated on it.
	rated := 0
	// MetersFor is asked once an event (for the properties to decode, and rating uses the
	// same answer): its 3rd call is e3's.
	src.cfgs[0] = hookConfig{rated: &rated, n: 3, hook: func() { src.add(2, metered) }}
	run := func(upTo uint64, cause error, then ...func() uint64) *Worker {
		w := &Worker{JS: js, UsageStream: bus.UsageStream, Snapshots: store, Source: src, ViewStream: bus.ConfigStream,
			Partition: partition, SnapshotEvery: time.Hour, Log: slog.New(slog.DiscardHandler)}
		wctx, cancel := context.WithCancelCause(ctx)
		done := make(chan struct{})
		go func() { defer close(done); w.Run(wctx) }()
		require.Eventually(t, func() bool { return w.Counters.Seq.Load() >= upTo }, 10*time.Second, 10*time.Millisecond)
		for _, f := range then {
			upTo = f()
			require.Eventually(t, func() bool { return w.Counters.Seq.Load() >= upTo }, 10*time.Second, 10*time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond)
		cancel(cause)
		<-done
		return w
	}
	w := run(seqs[4], nil)
	assert.EqualValues(t, 3, w.Counters.Unmetered.Load(), "e1-e3 on the first view")
	assert.EqualValues(t, 2, w.Counters.Debits.Load(), "e4 and e5 on the newer one, though fetched with e3")
	_, recs := ratingViews(t, js)
	require.Equal(t, []events.RatingView{{Partition: partition, After: 0, Config: 1}, {Partition: partition, After: seqs[2], Config: 2}}, recs)

	// A restart records its view again (the fence against a paused former owner).
	run(seqs[4], nil)
	_, again := ratingViews(t, js)
	assert.Equal(t, append(recs, events.RatingView{Partition: partition, After: seqs[4], Config: 2}), again)

	// Two more events, then a stop that saves nothing (as a kill); a newer configuration comes,
	// and the restart re-rates the two on the view they were rated on, e8 on the newer one.
	seqs = append(seqs, publishUsage(t, js, "e6", "3"), publishUsage(t, js, "e7", "4"))
	run(seqs[6], ErrLeaseLost)
	src.add(3, config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("7"), EffectiveFrom: t0.Add(-time.Hour), Period: mth}))
	run(seqs[6], nil, func() uint64 {
		seqs = append(seqs, publishUsage(t, js, "e8", "1"))
		return seqs[7]
	})

	st := storedState(t, store, partition)
	require.NotNil(t, st)
	require.Equal(t, seqs[7], st.Seq)
	views, recs := ratingViews(t, js)
	require.Equal(t, []events.RatingView{{Partition: partition, After: 0, Config: 1}, {Partition: partition, After: seqs[2], Config: 2},
		{Partition: partition, After: seqs[4], Config: 2}, // the restart at the same point
		{Partition: partition, After: seqs[4], Config: 2}, // the one that was stopped as by a kill
		{Partition: partition, After: seqs[4], Config: 2}, // its restart, re-rating e6 and e7
		{Partition: partition, After: seqs[6], Config: 3}}, recs)
	rebuilt, err := Rebuild(ctx, js, bus.UsageStream, map[int]uint64{partition: st.Seq}, views, src.RatingView, RebuildHooks{})
	require.NoError(t, err)
	r := rebuilt[partition]
	require.NoError(t, r.Err)
	assert.EqualValues(t, 8, r.Events)
	r.State.ConfigSeq, r.State.ConfigKnown = st.ConfigSeq, st.ConfigKnown
	want, err := json.Marshal(st)
	require.NoError(t, err)
	got, err := json.Marshal(r.State)
	require.NoError(t, err)
	assert.JSONEq(t, string(want), string(got))
	assert.Equal(t, string(want), string(got))

	// On the last configuration alone, the rebuild differs: the views are what make it exact.
	last := NewViews()
	last.Add(events.RatingView{Partition: partition, After: 0, Config: 3})
	rebuilt, err = Rebuild(ctx, js, bus.UsageStream, map[int]uint64{partition: st.Seq}, last, src.RatingView, RebuildHooks{})
	require.NoError(t, err)
	other, err := json.Marshal(rebuilt[partition].State)
	require.NoError(t, err)
	assert.NotEqual(t, string(want), string(other))

	// Usage no record covers cannot be rebuilt, and says so.
	late := NewViews()
	late.Add(events.RatingView{Partition: partition, After: seqs[3], Config: 2})
	rebuilt, err = Rebuild(ctx, js, bus.UsageStream, map[int]uint64{partition: st.Seq}, late, src.RatingView, RebuildHooks{})
	require.NoError(t, err)
	assert.ErrorIs(t, rebuilt[partition].Err, ErrNoView)
}

// A process that lost its partition while paused cannot record a view after the new owner's,
// even when the new owner started on the view the last record names: records are appended
// with the expected last sequence of the partition's subject, and every start writes one.
func TestAStaleOwnerCannotRecordAView(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	old := &Worker{JS: js, ViewStream: bus.ConfigStream, Partition: 2}
	require.NoError(t, old.recordView(ctx, &State{Seq: 5, ConfigSeq: 1}, true))
	// The old owner saved a snapshot at 9 on view 1 and was paused; the new one takes over.
	owner := &Worker{JS: js, ViewStream: bus.ConfigStream, Partition: 2}
	require.NoError(t, owner.recordView(ctx, &State{Seq: 9, ConfigSeq: 1}, true))
	// The old owner wakes and moves to a newer view: refused.
	err := old.recordView(ctx, &State{Seq: 12, ConfigSeq: 3}, false)
	require.Error(t, err)
	var apiErr *jetstream.APIError
	assert.True(t, errors.As(err, &apiErr), "%v", err)
	require.NoError(t, owner.recordView(ctx, &State{Seq: 20, ConfigSeq: 4}, false))
	views, recs := ratingViews(t, js)
	assert.Equal(t, []events.RatingView{{Partition: 2, After: 5, Config: 1}, {Partition: 2, After: 9, Config: 1}, {Partition: 2, After: 20, Config: 4}}, recs)
	cfg, _ := views.At(2, 15)
	assert.EqualValues(t, 1, cfg, "what the new owner rated")
}

// A partition rated for a while by an allot from before views were recorded (a rolling
// upgrade) moved to a view nobody recorded: the next start of one that records says the views
// of the events since the last record are unknown, and Rebuild reports the partition as not
// rebuilt rather than re-rate them on a guess.
func TestViewsRatedByAnOlderReleaseAreUnknown(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	w := &Worker{JS: js, ViewStream: bus.ConfigStream, Partition: 1}
	require.NoError(t, w.recordView(ctx, &State{Seq: 0, ConfigSeq: 1}, true))
	// An older release rated events 1..20 and moved to view 2 somewhere, recording nothing.
	w2 := &Worker{JS: js, ViewStream: bus.ConfigStream, Partition: 1}
	require.NoError(t, w2.recordView(ctx, &State{Seq: 20, ConfigSeq: 2}, true))
	views, recs := ratingViews(t, js)
	assert.Equal(t, []events.RatingView{{Partition: 1, After: 0, Config: 1}, {Partition: 1, After: 0, Unknown: true}, {Partition: 1, After: 20, Config: 2}}, recs)
	for _, seq := range []uint64{1, 10, 20} {
		_, ok := views.At(1, seq)
		assert.False(t, ok, "usage %d", seq)
	}
	cfg, ok := views.At(1, 21)
	assert.True(t, ok)
	assert.EqualValues(t, 2, cfg)
	// A restart on the same view, or one after a newer view was recorded, is no such case.
	require.NoError(t, w2.recordView(ctx, &State{Seq: 25, ConfigSeq: 2}, true))
	require.NoError(t, w2.recordView(ctx, &State{Seq: 30, ConfigSeq: 3}, false))
	require.NoError(t, w2.recordView(ctx, &State{Seq: 30, ConfigSeq: 3}, true))
	_, recs = ratingViews(t, js)
	for _, r := range recs[3:] {
		assert.False(t, r.Unknown, "%+v", r)
	}
}
