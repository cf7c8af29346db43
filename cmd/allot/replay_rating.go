package main

import (
	"cmp"
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

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/rating"
)

// ratingCheck is one rating partition rebuilt by replay: its state folded again from the usage
// stream, on the configuration views its workers recorded, through the usage sequence of its
// stored snapshot — and, with --verify, compared with that snapshot, and its debits with the
// ledger's.
type ratingCheck struct {
	Partition int    `json:"partition"`
	Seq       uint64 `json:"seq"`    // usage stream sequence the snapshot covers
	Events    uint64 `json:"events"` // usage messages of the partition folded
	Digest    string `json:"digest,omitempty"`
	Expected  string `json:"expected_digest,omitempty"` // the stored snapshot's
	Match     *bool  `json:"match,omitempty"`           // the state and the debits both
	// Debits is how many debits, unrated events and quota uses rating the partition's events
	// again gave, and DebitsDigest a digest of them (in no order); LedgerDebits and
	// LedgerDigest the same of those the ledger applied for the events.
	Debits       uint64 `json:"debits"`
	DebitsDigest string `json:"debits_digest,omitempty"`
	LedgerDebits uint64 `json:"ledger_debits"`
	LedgerDigest string `json:"ledger_debits_digest,omitempty"`
	// Skipped is why the partition could not be rebuilt exactly, when it could not (it is
	// then not compared: neither a match nor a mismatch).
	Skipped string `json:"skipped,omitempty"`
}

// ratingSnapshotPrefix is the name of the rating workers' snapshots in the snapshot store
// (rating/p<N>).
const ratingSnapshotPrefix = "rating/p"

// ratingReplay is replay's rebuild of rating, in the steps cmdReplay runs around the ledger's
// fold: read the snapshots (loadRatingReplay), rate the usage stream again (rebuild), take the
// ledger's debits as the ledger is folded (ledgerDebit), compare (checks).
//
// A snapshot is what a worker keeps of its state (it saves one every --snapshot-every), so
// comparing with it checks the live fold. The state holds the period's quantities only, so
// the debits, unrated events and quota uses are compared too: a price rated on the wrong view
// leaves the same quantities.
type ratingReplay struct {
	snaps map[int]*rating.State
	upTo  map[int]uint64
	// LedgerEnd is the ledger's last sequence once the snapshots were read: a worker saves a
	// snapshot only once the debits of the events it covers are stored, so the ledger folded
	// that far holds them all.
	LedgerEnd uint64
	// partitionOf is the usage stream's own partitioning (its subject transform), for the
	// ledger's debits.
	partitionOf       func(scope events.Scope, customer string) (int, bool)
	partitions        map[customerKey]int // partitionOf's answers (-1: none)
	rerated, ledgered map[int]*debitDigest
	checks            []ratingCheck
}

// debitDigest sums rating's output (debits, unrated events, quota uses) in no particular
// order: a count, and the sum of a 64-bit hash of each item (wrapping) — its customer, usage
// sequence, kind, and a debit's rule, amount and event time or a quota use's quota, amount,
// period and time.
type debitDigest struct {
	n, sum uint64
}

// ratedItem is one item of rating's output for a usage event.
type ratedItem struct {
	kind   byte // 'd' debit, 'u' unrated event, 'q' quota use
	rule   uint64
	amount events.Credits
	quota  string
	use    string // a quota use's amount, as canonical text
	period events.Period
	at     time.Time
}

func (d *debitDigest) add(scope events.Scope, customer string, usageSeq uint64, it ratedItem) {
	h := uint64(14695981039346656037)
	mix := func(b byte) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	str := func(s string) {
		for i := 0; i < len(s); i++ {
			mix(s[i])
		}
		mix(0)
	}
	u64 := func(v uint64) {
		for i := 0; i < 8; i++ {
			mix(byte(v >> (8 * i)))
		}
	}
	instant := func(t time.Time) {
		if t.IsZero() {
			u64(0)
			return
		}
		u64(uint64(t.Unix()))
		u64(uint64(t.Nanosecond()))
	}
	str(scope.Product)
	str(scope.Env)
	str(customer)
	u64(usageSeq)
	mix(it.kind)
	switch it.kind {
	case 'd':
		u64(it.rule)
		u64(uint64(it.amount))
		instant(it.at)
	case 'q':
		str(it.quota)
		str(it.use)
		str(it.period.Unit)
		u64(uint64(it.period.Count))
		str(it.period.Mode)
		instant(it.period.Anchor)
		str(it.period.TimeZone)
		instant(it.at)
	}
	d.n++
	d.sum += h
}

func (d *debitDigest) String() string {
	if d == nil {
		d = &debitDigest{} // nothing: the same as nothing on the other side
	}
	return fmt.Sprintf("%d:%016x", d.n, d.sum)
}

// loadRatingReplay reads every rating partition's stored snapshot; nil when there is none.
func loadRatingReplay(ctx context.Context, js jetstream.JetStream) (*ratingReplay, error) {
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	if err != nil {
		return nil, exitWith(4, err)
	}
	infos, err := store.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, exitWith(4, fmt.Errorf("listing rating snapshots: %w", err))
	}
	rr := &ratingReplay{snaps: map[int]*rating.State{}, upTo: map[int]uint64{}, partitions: map[customerKey]int{},
		rerated: map[int]*debitDigest{}, ledgered: map[int]*debitDigest{}}
	for _, in := range infos {
		p, err := strconv.Atoi(strings.TrimPrefix(in.Name, ratingSnapshotPrefix))
		if !strings.HasPrefix(in.Name, ratingSnapshotPrefix) || err != nil || p < 0 {
			continue
		}
		st, err := readRatingSnapshot(ctx, store, in.Name, in.Size)
		if err != nil {
			return nil, exitWith(4, err)
		}
		rr.snaps[p] = st
	}
	if len(rr.snaps) == 0 {
		return nil, nil
	}
	ls, err := js.Stream(ctx, bus.LedgerStream)
	if err != nil {
		return nil, exitWith(4, err)
	}
	info, err := ls.Info(ctx)
	if err != nil {
		return nil, exitWith(4, err)
	}
	rr.LedgerEnd = info.State.LastSeq
	us, err := js.Stream(ctx, bus.UsageStream)
	if err != nil {
		return nil, exitWith(4, err)
	}
	if rr.partitionOf, err = usagePartitioning(us.CachedInfo().Config); err != nil {
		return nil, exitWith(4, err)
	}
	return rr, nil
}

// usagePartitioning returns the partition the usage stream files a customer's events under,
// by the stream's own subject transform (the server's code, so the same hash).
func usagePartitioning(cfg jetstream.StreamConfig) (func(events.Scope, string) (int, bool), error) {
	if cfg.SubjectTransform == nil {
		return nil, fmt.Errorf("stream %s has no partitioning transform", cfg.Name)
	}
	tr, err := server.NewSubjectTransform(cfg.SubjectTransform.Source, cfg.SubjectTransform.Destination)
	if err != nil {
		return nil, fmt.Errorf("stream %s's partitioning: %w", cfg.Name, err)
	}
	return func(scope events.Scope, customer string) (int, bool) {
		stored, err := tr.Match(events.UsageSubject(scope.Product, scope.Env, customer))
		if err != nil {
			return 0, false
		}
		return rating.SubjectPartition(stored)
	}, nil
}

// rebuild rates the usage stream again, each partition up to its snapshot's sequence.
func (rr *ratingReplay) rebuild(ctx context.Context, js jetstream.JetStream, log *slog.Logger) error {
	// The views after the snapshots: every view a snapshot's events were rated on was recorded
	// before the snapshot was saved.
	cat, views, err := readConfigStream(ctx, js)
	if err != nil {
		return exitWith(4, err)
	}
	for p, st := range rr.snaps {
		c := ratingCheck{Partition: p, Seq: st.Seq}
		if !st.ConfigKnown {
			c.Skipped = "its snapshot names no configuration view (written by an allot from before views were kept)"
		} else {
			rr.upTo[p] = st.Seq
		}
		rr.checks = append(rr.checks, c)
	}
	slices.SortFunc(rr.checks, func(a, b ratingCheck) int { return a.Partition - b.Partition })
	lastLog := time.Now()
	rebuilt, err := rating.Rebuild(ctx, js, bus.UsageStream, rr.upTo, views, ratingSource{cat}.RatingView, rating.RebuildHooks{
		Progress: func(seq uint64) {
			if time.Since(lastLog) > 2*time.Second {
				log.Info("re-rating usage", "seq", seq)
				lastLog = time.Now()
			}
		},
		Rated: func(p int, m *rating.Message) {
			d := rr.rerated[p]
			if d == nil {
				d = &debitDigest{}
				rr.rerated[p] = d
			}
			for _, db := range m.Out.Debits {
				d.add(m.Scope, m.Usage.Customer, db.UsageSeq, ratedItem{kind: 'd', rule: projector.RuleKeyHash(db.Rule), amount: db.Amount, at: db.EventTime})
			}
			if u := m.Out.Unrated; u != nil {
				d.add(m.Scope, m.Usage.Customer, u.UsageSeq, ratedItem{kind: 'u'})
			}
			for _, q := range m.Out.Quotas {
				d.add(m.Scope, m.Usage.Customer, q.UsageSeq, ratedItem{kind: 'q', quota: q.Quota, use: q.Amount.String(), period: q.Period, at: q.At})
			}
		},
	})
	if err != nil {
		return exitWith(4, fmt.Errorf("re-rating the usage stream: %w", err))
	}
	for i := range rr.checks {
		c := &rr.checks[i]
		r := rebuilt[c.Partition]
		if c.Skipped != "" || r == nil {
			continue
		}
		if r.Err != nil {
			c.Skipped = r.Err.Error()
			delete(rr.upTo, c.Partition)
			continue
		}
		snap := rr.snaps[c.Partition]
		c.Events = r.Events
		// The view named for what comes next is the snapshot's to say; the rest is the fold's.
		r.State.ConfigSeq, r.State.ConfigKnown = snap.ConfigSeq, snap.ConfigKnown
		if c.Digest, err = stateDigest(r.State); err != nil {
			return err
		}
		if c.Expected, err = stateDigest(snap); err != nil {
			return err
		}
	}
	return nil
}

// ledgerRated takes one debit or quota use the ledger's fold applied
// (projector.Ledger.OnRated).
func (rr *ratingReplay) ledgerRated(d projector.AppliedRated) {
	k := customerKey{d.Scope, d.Customer}
	p, ok := rr.partitions[k]
	if !ok {
		if p, ok = rr.partitionOf(d.Scope, d.Customer); !ok {
			p = -1
		}
		rr.partitions[k] = p // a customer's entries come again and again, rarely in a row
	}
	if p < 0 {
		return
	}
	if upTo, ok := rr.upTo[p]; !ok || d.UsageSeq > upTo {
		return
	}
	g := rr.ledgered[p]
	if g == nil {
		g = &debitDigest{}
		rr.ledgered[p] = g
	}
	it := ratedItem{kind: 'd', rule: d.Rule, amount: d.Amount, at: d.At}
	switch {
	case d.Unrated:
		it = ratedItem{kind: 'u'}
	case d.Quota != "":
		it = ratedItem{kind: 'q', quota: d.Quota, use: d.Use.String(), period: d.Period, at: d.At}
	}
	g.add(d.Scope, d.Customer, d.UsageSeq, it)
}

// customerKey is a customer of a product and env.
type customerKey struct {
	scope    events.Scope
	customer string
}

// results are the partitions' checks, compared when verify.
func (rr *ratingReplay) results(verify bool) []ratingCheck {
	for i := range rr.checks {
		c := &rr.checks[i]
		if c.Skipped != "" {
			continue
		}
		re, le := rr.rerated[c.Partition], rr.ledgered[c.Partition]
		c.DebitsDigest, c.LedgerDigest = re.String(), le.String()
		if re != nil {
			c.Debits = re.n
		}
		if le != nil {
			c.LedgerDebits = le.n
		}
		if verify {
			match := c.Digest == c.Expected && c.DebitsDigest == c.LedgerDigest
			c.Match = &match
		} else {
			c.Expected = ""
		}
	}
	return rr.checks
}

// readRatingSnapshot reads one partition's snapshot. A live worker rewrites it every
// --snapshot-every, and a rewrite removes the chunks of the version being read: a read that
// fails is tried again on the newer version, a few times.
// A read whose chunks were removed waits for them until its deadline: each try has one of 2 s
// plus a second per 10 MB of the snapshot (its size when listed), not the store's default.
func readRatingSnapshot(ctx context.Context, store jetstream.ObjectStore, name string, size uint64) (*rating.State, error) {
	var err error
	for try := 0; try < 8; try++ {
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
	var bad error
	err = bus.FoldOrdered(ctx, js, bus.ConfigStream, 1, info.State.LastSeq, 30*time.Second, func(seq uint64, _ time.Time, m jetstream.Msg) {
		typ := m.Headers().Get(events.HeaderType)
		if typ == events.TypeRatingView {
			var v events.RatingView
			if err := json.Unmarshal(m.Data(), &v); err != nil {
				bad = cmp.Or(bad, fmt.Errorf("reading the rating view record at config sequence %d: %w", seq, err))
				return
			}
			views.Add(v)
		}
		// As the live follower does: an unreadable entry is skipped by every catalog alike.
		_ = cat.Apply(seq, typ, m.Data())
	}, nil)
	if err = cmp.Or(err, bad); err != nil {
		return nil, nil, err
	}
	return cat, views, nil
}
