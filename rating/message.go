package rating

import (
	"fmt"
	"sort"
	"time"

	"github.com/allot-dev/allot/events"
)

// Message is what rating made of one message of the usage stream.
type Message struct {
	Scope events.Scope
	// Usage is the event, its Data holding the properties rating read (its meters' value
	// properties and filters), not necessarily the others.
	Usage events.Usage
	Out   Output
	// Malformed is why the message could not be read as a usage event, when it could not:
	// it is passed over (only a producer publishing straight to JetStream gets one there).
	Malformed error
	// FutureDated: the event was dated more than events.MaxFutureSkew after the stream
	// received it, and is rated at the time the stream received it.
	FutureDated bool
}

// RateMessage folds the usage message at stream sequence seq — its stored subject, its body,
// and the time the stream received it — into the state, as a worker rates it. It is
// deterministic, like Rate: replaying the stream on the same views rebuilds the same state.
func (s *State) RateMessage(seq uint64, subject string, data []byte, received time.Time, cfg Config) (Message, error) {
	if seq <= s.Seq {
		return Message{}, ErrApplied
	}
	var m Message
	s.dec.Transient = s.Reuse
	addr, err := events.ParseUsageSubject(subject)
	if err == nil {
		// Only the properties the type's meters read: Rate reads no others.
		s.needs.scope, s.needs.cfg, s.needs.looked = events.Scope{Product: addr.Product, Env: addr.Env}, cfg, false
		m.Usage, err = s.dec.DecodeFor(data, &s.needs)
		s.needs.cfg = nil
	}
	if err == nil && m.Usage.Customer != addr.Customer {
		err = fmt.Errorf("customer %q in the body, %q in the subject", m.Usage.Customer, addr.Customer)
	}
	if err != nil {
		// The event cannot be rated or even named: the state moves past it.
		s.Seq, m.Malformed = seq, err
		return m, nil
	}
	if m.Usage.Time.IsZero() {
		m.Usage.Time = received.UTC()
	} else if m.Usage.Time.Sub(received) > events.MaxFutureSkew {
		// A producer's clock far ahead: counting the event in a window that has not begun
		// would break what quota state relies on (events.MaxFutureSkew). The stream's time is
		// the best estimate of when it happened; the fold sees the same on every replay.
		m.Usage.Time, m.FutureDated = received.UTC(), true
	}
	m.Scope = events.Scope{Product: addr.Product, Env: addr.Env}
	meters := s.needs.meters
	if !s.needs.looked || s.needs.typ != m.Usage.Type {
		meters = cfg.MetersFor(m.Scope, m.Usage.Type) // the decode did not look them up
	}
	s.needs.meters = nil
	m.Out, err = s.rate(seq, m.Scope, m.Usage, cfg, meters)
	return m, err
}

// Views says which configuration view rated each usage event of each partition: the
// rating.view.v1 records (events.TypeRatingView), added in config stream order.
type Views struct {
	parts map[int][]events.RatingView // per partition ascending by After
}

// NewViews returns an empty record.
func NewViews() *Views { return &Views{parts: map[int][]events.RatingView{}} }

// Add takes the next record. It replaces what earlier ones said about the usage after its
// After: a worker restarted from a snapshot re-rates the events after it on the view it names,
// whatever rated them before the restart.
func (v *Views) Add(r events.RatingView) {
	rs := v.parts[r.Partition]
	for len(rs) > 0 && rs[len(rs)-1].After >= r.After {
		rs = rs[:len(rs)-1]
	}
	v.parts[r.Partition] = append(rs, r)
}

// At returns the config sequence of the view that rated the event at usage sequence seq of a
// partition; false when no record covers it, or one says it is unknown (rated by an allot
// from before views were recorded).
func (v *Views) At(partition int, seq uint64) (uint64, bool) {
	rs := v.parts[partition]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].After >= seq })
	if i == 0 || rs[i-1].Unknown {
		return 0, false
	}
	return rs[i-1].Config, true
}

// Until returns the usage sequence up to which the view that rated seq stays in force (the
// next record's After), or ^uint64(0) when it is the partition's latest.
func (v *Views) Until(partition int, seq uint64) uint64 {
	rs := v.parts[partition]
	i := sort.Search(len(rs), func(i int) bool { return rs[i].After >= seq })
	if i == len(rs) {
		return ^uint64(0)
	}
	return rs[i].After
}
