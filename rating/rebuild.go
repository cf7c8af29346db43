package rating

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// Rebuilt is one partition's state folded again from the usage stream.
type Rebuilt struct {
	State  *State
	Events uint64 // usage messages of the partition folded
	// Err is why the partition could not be rebuilt exactly, when it could not: an event no
	// view record covers (rated before allot recorded its views), or usage the stream no
	// longer holds. The other partitions are rebuilt all the same.
	Err error
}

// ErrNoView is a rebuild's Err for usage rated before the partition's first view record.
var ErrNoView = errors.New("no rating view record covers this usage (rated before allot recorded the views it rates on)")

// RebuildHooks are what a caller of Rebuild may watch, each optional.
type RebuildHooks struct {
	// Progress is called with the usage sequence reached as each batch of messages is read.
	Progress func(seq uint64)
	// Rated is called with what rating made of each message folded, in stream order, on the
	// fold's goroutine: replay compares the debits with the ledger's. The message is valid
	// only during the call: its data, debits, quota uses and their periods are memory the
	// rebuild uses again for the next message (State.Reuse). Copy what is to be kept.
	Rated func(partition int, m *Message)
}

// Rebuild folds the usage stream into a fresh state per partition of upTo, each through the
// usage sequence upTo gives it (its snapshot's), rating every event on the view that views
// says rated it (viewAt returns the configuration of a config sequence), as its worker did.
//
// As projector.Rebuild does, it receives on one goroutine and folds on another
// (bus.FoldOrdered).
func Rebuild(ctx context.Context, js jetstream.JetStream, stream string, upTo map[int]uint64, views *Views,
	viewAt func(configSeq uint64) (Config, error), hooks RebuildHooks) (map[int]*Rebuilt, error) {
	out := make(map[int]*Rebuilt, len(upTo))
	var end uint64
	for p, seq := range upTo {
		st := NewState()
		st.NoIDs, st.Reuse = true, true // rebuildOne is done with each message before the next
		out[p] = &Rebuilt{State: st}
		end = max(end, seq)
	}
	if end == 0 {
		return out, nil
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stream, err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", stream, err)
	}
	if first := info.State.FirstSeq; first > 1 {
		for p, seq := range upTo {
			if seq >= 1 {
				out[p].Err = fmt.Errorf("the usage stream begins at sequence %d: what the partition rated before it is gone", first)
			}
		}
	}
	if info.State.LastSeq < end {
		return nil, fmt.Errorf("the usage stream ends at sequence %d, before the %d a rating snapshot covers", info.State.LastSeq, end)
	}
	configs := map[uint64]Config{}
	err = bus.FoldOrdered(ctx, js, stream, 1, end, 30*time.Second, func(seq uint64, received time.Time, m jetstream.Msg) {
		if p, ok := SubjectPartition(m.Subject()); ok {
			if r := out[p]; r != nil && r.Err == nil && seq <= upTo[p] {
				r.Err = rebuildOne(r, p, seq, m, received, views, configs, viewAt, hooks.Rated)
			}
		}
	}, hooks.Progress)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rebuildOne rates one message of partition p into r.
func rebuildOne(r *Rebuilt, p int, seq uint64, m jetstream.Msg, received time.Time, views *Views,
	configs map[uint64]Config, viewAt func(uint64) (Config, error), rated func(int, *Message)) error {
	at, ok := views.At(p, seq)
	if !ok {
		return fmt.Errorf("usage sequence %d: %w", seq, ErrNoView)
	}
	cfg := configs[at]
	if cfg == nil {
		var err error
		if cfg, err = viewAt(at); err != nil {
			return fmt.Errorf("the view at config sequence %d: %w", at, err)
		}
		configs[at] = cfg
	}
	out, err := r.State.RateMessage(seq, m.Subject(), m.Data(), received, cfg)
	if err != nil {
		return fmt.Errorf("usage sequence %d: %w", seq, err)
	}
	r.Events++
	if rated != nil {
		o := out // only then on the heap
		rated(p, &o)
	}
	return nil
}

// SubjectPartition reads the partition of a stored usage subject (allot.usage.<p>.…), which
// is all a partition's consumer filters on (events.UsagePartitionFilter): a message whose
// other tokens are unreadable is still its partition's, and passed over as malformed.
func SubjectPartition(subject string) (int, bool) {
	rest, ok := strings.CutPrefix(subject, events.UsagePrefix+".")
	if !ok {
		return 0, false
	}
	tok, _, ok := strings.Cut(rest, ".")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(tok)
	return p, err == nil && p >= 0
}
