package rating

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/allot-dev/allot/events"
)

// snapshot is the stored form of a State: every accumulator, sorted, so the same state always
// encodes to the same bytes.
type snapshot struct {
	Format    int           `json:"format"`
	Seq       uint64        `json:"seq"`
	ConfigSeq *uint64       `json:"config_seq,omitempty"`
	Accs      []snapshotAcc `json:"accs"`
}

type snapshotAcc struct {
	Product  string           `json:"product"`
	Env      string           `json:"env"`
	Customer string           `json:"customer"`
	Rule     string           `json:"rule"`
	Anchor   *time.Time       `json:"anchor,omitempty"`
	Windows  []snapshotWindow `json:"windows"`
}

type snapshotWindow struct {
	Start    time.Time      `json:"start"`
	End      *time.Time     `json:"end,omitempty"` // format 2
	Q        events.Decimal `json:"q"`
	Seen     []string       `json:"seen,omitempty"`
	LatestAt *time.Time     `json:"latest_at,omitempty"` // format 2
}

// snapshotFormat is the format MarshalJSON writes: 2 keeps each window's end and a latest
// meter's event time; 1 (read still) kept neither.
const snapshotFormat = 2

// MarshalJSON encodes the state deterministically.
func (s *State) MarshalJSON() ([]byte, error) {
	snap := snapshot{Format: snapshotFormat, Seq: s.Seq, Accs: make([]snapshotAcc, 0, len(s.accs))}
	if s.ConfigKnown {
		cs := s.ConfigSeq
		snap.ConfigSeq = &cs
	}
	for k, a := range s.accs {
		sa := snapshotAcc{Product: k.Product, Env: k.Env, Customer: k.Customer, Rule: k.Rule}
		if !a.Anchor.IsZero() {
			t := a.Anchor
			sa.Anchor = &t
		}
		for _, w := range a.Windows {
			sw := snapshotWindow{Start: w.Start, Q: w.Q}
			if !w.End.IsZero() {
				end := w.End
				sw.End = &end
			}
			if !w.LatestAt.IsZero() {
				at := w.LatestAt
				sw.LatestAt = &at
			}
			for v := range w.Seen {
				sw.Seen = append(sw.Seen, v)
			}
			slices.Sort(sw.Seen)
			sa.Windows = append(sa.Windows, sw)
		}
		snap.Accs = append(snap.Accs, sa)
	}
	slices.SortFunc(snap.Accs, func(a, b snapshotAcc) int {
		return strings.Compare(a.Product+"\x00"+a.Env+"\x00"+a.Customer+"\x00"+a.Rule, b.Product+"\x00"+b.Env+"\x00"+b.Customer+"\x00"+b.Rule)
	})
	return json.Marshal(snap)
}

// UnmarshalJSON restores a state written by MarshalJSON.
func (s *State) UnmarshalJSON(b []byte) error {
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return fmt.Errorf("reading rating snapshot: %w", err)
	}
	if snap.Format != 1 && snap.Format != snapshotFormat {
		return fmt.Errorf("reading rating snapshot: unknown format %d", snap.Format)
	}
	s.Seq, s.ConfigSeq, s.ConfigKnown = snap.Seq, 0, snap.ConfigSeq != nil
	if snap.ConfigSeq != nil {
		s.ConfigSeq = *snap.ConfigSeq
	}
	s.accs = make(map[accKey]*acc, len(snap.Accs))
	for _, sa := range snap.Accs {
		a := &acc{}
		if sa.Anchor != nil {
			a.Anchor = *sa.Anchor
		}
		for _, sw := range sa.Windows {
			w := window{Start: sw.Start, Q: sw.Q}
			if sw.End != nil {
				w.End = *sw.End
			}
			if sw.LatestAt != nil {
				w.LatestAt = *sw.LatestAt
			}
			if len(sw.Seen) > 0 {
				w.Seen = make(map[string]struct{}, len(sw.Seen))
				for _, v := range sw.Seen {
					w.Seen[v] = struct{}{}
				}
			}
			a.Windows = append(a.Windows, w)
		}
		s.accs[accKey{sa.Product, sa.Env, sa.Customer, sa.Rule}] = a
	}
	return nil
}
