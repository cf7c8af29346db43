package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/rating"
)

// ratingCheck is one rating partition rebuilt by replay: its state folded again from the usage
// stream, on the configuration views its workers recorded, through the usage sequence of its
// stored snapshot — and, with --verify, compared with that snapshot.
type ratingCheck struct {
	Partition int    `json:"partition"`
	Seq       uint64 `json:"seq"`    // usage stream sequence the snapshot covers
	Events    uint64 `json:"events"` // usage messages of the partition folded
	Digest    string `json:"digest,omitempty"`
	Expected  string `json:"expected_digest,omitempty"` // the stored snapshot's
	Match     *bool  `json:"match,omitempty"`
	// Skipped is why the partition could not be rebuilt exactly, when it could not (it is
	// then not compared: neither a match nor a mismatch).
	Skipped string `json:"skipped,omitempty"`
}

// ratingSnapshotPrefix is the name of the rating workers' snapshots in the snapshot store
// (rating/p<N>).
const ratingSnapshotPrefix = "rating/p"

// replayRating rebuilds every rating partition that has a stored snapshot: the usage stream is
// folded again, each event on the view that rated it (rating.view.v1 records on the config
// stream), up to the snapshot's sequence. A snapshot is what a worker keeps of its state (it
// saves one every --snapshot-every), so comparing with it checks the live fold too.
func replayRating(ctx context.Context, js jetstream.JetStream, verify bool, log *slog.Logger) ([]ratingCheck, error) {
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	if err != nil {
		return nil, exitWith(4, err)
	}
	infos, err := store.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, exitWith(4, fmt.Errorf("listing rating snapshots: %w", err))
	}
	snaps := map[int]*rating.State{}
	for _, in := range infos {
		p, err := strconv.Atoi(strings.TrimPrefix(in.Name, ratingSnapshotPrefix))
		if !strings.HasPrefix(in.Name, ratingSnapshotPrefix) || err != nil || p < 0 {
			continue
		}
		st, err := readRatingSnapshot(ctx, store, in.Name, in.Size)
		if err != nil {
			return nil, exitWith(4, err)
		}
		snaps[p] = st
	}
	if len(snaps) == 0 {
		return nil, nil
	}
	// The views after the snapshots: every view a snapshot's events were rated on was recorded
	// before the snapshot was saved.
	cat, views, err := readConfigStream(ctx, js)
	if err != nil {
		return nil, exitWith(4, err)
	}
	upTo := map[int]uint64{}
	var checks []ratingCheck
	for p, st := range snaps {
		c := ratingCheck{Partition: p, Seq: st.Seq}
		if !st.ConfigKnown {
			c.Skipped = "its snapshot names no configuration view (written by an allot from before views were kept)"
		} else {
			upTo[p] = st.Seq
		}
		checks = append(checks, c)
	}
	slices.SortFunc(checks, func(a, b ratingCheck) int { return a.Partition - b.Partition })
	lastLog := time.Now()
	rebuilt, err := rating.Rebuild(ctx, js, bus.UsageStream, upTo, views, ratingSource{cat}.RatingView, func(seq uint64) {
		if time.Since(lastLog) > 2*time.Second {
			log.Info("re-rating usage", "seq", seq)
			lastLog = time.Now()
		}
	})
	if err != nil {
		return nil, exitWith(4, fmt.Errorf("re-rating the usage stream: %w", err))
	}
	for i := range checks {
		c := &checks[i]
		r := rebuilt[c.Partition]
		if c.Skipped != "" || r == nil {
			continue
		}
		if r.Err != nil {
			c.Skipped = r.Err.Error()
			continue
		}
		snap := snaps[c.Partition]
		c.Events = r.Events
		// The view named for what comes next is the snapshot's to say; the rest is the fold's.
		r.State.ConfigSeq, r.State.ConfigKnown = snap.ConfigSeq, snap.ConfigKnown
		if c.Digest, err = stateDigest(r.State); err != nil {
			return nil, err
		}
		if verify {
			if c.Expected, err = stateDigest(snap); err != nil {
				return nil, err
			}
			match := c.Digest == c.Expected
			c.Match = &match
		}
	}
	return checks, nil
}

// readRatingSnapshot reads one partition's snapshot. A live worker rewrites it every
// --snapshot-every, and a rewrite removes the chunks of the version being read: a read that
// fails is tried again on the newer version, a few times.
// A read whose chunks were removed waits for them until its deadline: each try has one of 2 s
// plus a second per 10 MB of the snapshot (its size when listed), not the store's default.
func readRatingSnapshot(ctx context.Context, store jetstream.ObjectStore, name string, size uint64) (*rating.State, error) {
	var err error
	for try := 0; try < 5; try++ {
		var b []byte
		tctx, cancel := context.WithTimeout(ctx, 2*time.Second+time.Duration(size/10e6)*time.Second)
		b, err = store.GetBytes(tctx, name)
		cancel()
		if err == nil {
			st := rating.NewState()
			if err = json.Unmarshal(b, st); err == nil {
				return st, nil
			}
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(time.Duration(100*(try+1)) * time.Millisecond)
	}
	return nil, fmt.Errorf("reading %s: %w", name, err)
}

// stateDigest is the SHA-256 of a rating state's canonical encoding.
func stateDigest(st *rating.State) (string, error) {
	b, err := json.Marshal(st)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// readConfigStream folds the config stream, as it stands now, into a fresh catalog and the
// rating view records.
func readConfigStream(ctx context.Context, js jetstream.JetStream) (*catalog.Catalog, *rating.Views, error) {
	cat, views := catalog.New(), rating.NewViews()
	s, err := js.Stream(ctx, bus.ConfigStream)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", bus.ConfigStream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, nil, err
	}
	end := info.State.LastSeq
	if end == 0 {
		return cat, views, nil
	}
	cons, err := js.OrderedConsumer(ctx, bus.ConfigStream, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", bus.ConfigStream, err)
	}
	defer bus.DropOrdered(ctx, js, bus.ConfigStream, cons)
	it, err := cons.Messages()
	if err != nil {
		return nil, nil, fmt.Errorf("reading %s: %w", bus.ConfigStream, err)
	}
	defer it.Stop()
	for {
		m, err := it.Next(jetstream.NextMaxWait(30 * time.Second))
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s toward sequence %d: %w", bus.ConfigStream, end, err)
		}
		md, err := m.Metadata()
		if err != nil {
			return nil, nil, err
		}
		typ := m.Headers().Get(events.HeaderType)
		if typ == events.TypeRatingView {
			var v events.RatingView
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				return nil, nil, fmt.Errorf("reading the rating view record at config sequence %d: %w", md.Sequence.Stream, err)
			}
			views.Add(v)
		}
		// As the live follower does: an unreadable entry is skipped by every catalog alike.
		_ = cat.Apply(md.Sequence.Stream, typ, m.Data())
		if md.Sequence.Stream >= end || md.NumPending == 0 {
			return cat, views, nil
		}
	}
}
