package rating

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// Counters are a worker's running totals, for /metrics.
type Counters struct {
	Events, Debits, CreditBacks, Unrated, Unmetered, Malformed, Snapshots, Entries atomic.Int64
	// FutureDated counts events published straight to JetStream dated more than
	// events.MaxFutureSkew after the stream received them (HTTP ingest refuses those): they
	// are rated at the time the stream received them.
	FutureDated atomic.Int64
	Batches     atomic.Int64 // fetches that brought messages
	Seq         atomic.Uint64
}

// ConfigSource is the configuration by config-stream sequence: the catalog.
type ConfigSource interface {
	// RatingSeq is the sequence of the latest meter, rule version or quota.
	RatingSeq() uint64
	// RatingView is the configuration as it stood at seq, which nothing changes afterwards.
	RatingView(seq uint64) (Config, error)
	// WaitFor returns once the configuration has reached seq.
	WaitFor(ctx context.Context, seq uint64) error
}

// Worker rates one partition of the usage stream.
//
// With a Source, the configuration a worker rates on is recorded: each batch is rated on one
// view of it (RatingView); a newer one is taken at a batch's start (a batch open when one
// comes is written and ended there), after a view record (ViewStream) and the snapshot that
// name it are stored; and a restarted worker rates what was pending at its start on the view
// its snapshot names. A worker stopped between snapshots re-rates the events since the last
// one; on the configuration in force at its restart instead, an event rated unmetered before
// a meter was defined was charged if a kill happened in between, and not otherwise. The view
// records let replay rate every event again on the view that rated it (Rebuild).
type Worker struct {
	JS          jetstream.JetStream
	UsageStream string
	Snapshots   jetstream.ObjectStore
	// Config is a fixed configuration, when Source is nil.
	Config        Config
	Source        ConfigSource
	Partition     int
	Batch         int           // messages per fetch; default 1000
	Linger        time.Duration // how long a fetch may wait to fill while usage is flowing; default 100ms
	SnapshotEvery time.Duration // default 2s
	// Confirm, when set, makes sure this process still owns the partition (Pool sets it to
	// renew the partition's lease), right before each step only the owner may take: resetting
	// the partition's consumer, writing a batch's debits, saving the snapshot. An error stops
	// the step; the worker starts again, confirming first, until the pool stops it. Renewals
	// every second alone let a process that was paused past the lease's TTL (a long stop, a
	// frozen VM) wake and rate beside the partition's new owner until its next renewal: two
	// workers reading one consumer each price a share of the events on a share of the
	// period's quantity, and each can delete the other's consumer.
	Confirm func(context.Context) error
	// ViewStream, with a Source, is the stream (the config stream) where the worker records
	// each view it rates on (events.TypeRatingView), before it rates anything on it: what
	// lets replay rebuild and check the partition's state. Empty records nothing.
	ViewStream string
	Log        *slog.Logger
	Counters   Counters

	viewSeq uint64 // stream sequence of the partition's latest view record, once known
}

// ConsumerName is the durable consumer of a partition. A contract: never renamed.
func ConsumerName(partition int) string { return "rating-p" + strconv.Itoa(partition) }

func (w *Worker) snapshotName() string { return "rating/p" + strconv.Itoa(w.Partition) }

// Run rates until ctx ends. After any failure it starts again from its last snapshot, so a
// half-written batch is re-rated into the same debits (same ids, deduplicated).
func (w *Worker) Run(ctx context.Context) error {
	backoff := 100 * time.Millisecond
	for {
		err := w.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		w.Log.Warn("rating partition restarting from its snapshot", "partition", w.Partition, "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(backoff*2, 10*time.Second)
	}
}

// LoadState reads the partition's snapshot (an empty state when there is none).
func (w *Worker) LoadState(ctx context.Context) (*State, error) {
	st := NewState()
	b, err := w.Snapshots.GetBytes(ctx, w.snapshotName())
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("loading rating snapshot %s: %w", w.snapshotName(), err)
	}
	if err := json.Unmarshal(b, st); err != nil {
		return nil, err
	}
	return st, nil
}

// confirm is Confirm, when there is one.
func (w *Worker) confirm(ctx context.Context) error {
	if w.Confirm == nil {
		return nil
	}
	if err := w.Confirm(ctx); err != nil {
		return fmt.Errorf("%w: %w", ErrLeaseLost, err)
	}
	return nil
}

func (w *Worker) save(ctx context.Context, st *State) error {
	if err := w.confirm(ctx); err != nil {
		return err
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if _, err := w.Snapshots.PutBytes(ctx, w.snapshotName(), b); err != nil {
		return fmt.Errorf("saving rating snapshot: %w", err)
	}
	w.Counters.Snapshots.Add(1)
	return nil
}

// recordView writes that the events after st.Seq are rated on the view st.ConfigSeq. It is
// appended with the expected last sequence of the partition's subject, and a worker writes one
// at every start, even when the partition's last record names the view already: a process
// that lost the partition while paused then cannot slip a record in after the new owner took
// over (its expected sequence is stale), which would say the new owner rated on a view it
// never took. The last sequence is read afresh at each start (Direct Get, which a replica
// behind the leader may answer: the leader's check then refuses the write, and the restart
// reads again).
//
// At a start, a last record naming another view than the snapshot's from a point before the
// snapshot's sequence means the partition moved to that view without recording it — rated in
// between by an allot from before views were recorded (a rolling upgrade) — and which view
// rated those events is unknown: the records say so (Unknown), and replay reports the
// partition as not rebuilt rather than re-rate them on a guess.
func (w *Worker) recordView(ctx context.Context, st *State, start bool) error {
	if w.ViewStream == "" {
		return nil
	}
	if err := w.confirm(ctx); err != nil {
		return err
	}
	subject := events.RatingViewSubject(w.Partition)
	recs := []events.RatingView{{Partition: w.Partition, After: st.Seq, Config: st.ConfigSeq}}
	if start || w.viewSeq == 0 {
		s, err := w.JS.Stream(ctx, w.ViewStream)
		if err != nil {
			return fmt.Errorf("recording the rating view: %w", err)
		}
		w.viewSeq = 0
		last, err := s.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
		case err != nil:
			return fmt.Errorf("recording the rating view: %w", err)
		default:
			w.viewSeq = last.Sequence
			var had events.RatingView
			if err := json.Unmarshal(last.Data, &had); err != nil {
				return fmt.Errorf("reading the last rating view record of partition %d: %w", w.Partition, err)
			}
			if start && !had.Unknown && had.Config != st.ConfigSeq && had.After < st.Seq {
				recs = append([]events.RatingView{{Partition: w.Partition, After: had.After, Unknown: true}}, recs...)
			}
		}
	}
	for _, rec := range recs {
		data, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{events.TypeRatingView}}}
		ack, err := w.JS.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(w.viewSeq))
		if err != nil {
			w.viewSeq = 0
			return fmt.Errorf("recording the rating view of partition %d: %w", w.Partition, err)
		}
		w.viewSeq = ack.Sequence
	}
	return nil
}

func (w *Worker) run(ctx context.Context) error {
	batch := w.Batch
	if batch <= 0 {
		batch = 1000
	}
	linger := w.Linger
	if linger <= 0 {
		linger = 100 * time.Millisecond
	}
	every := w.SnapshotEvery
	if every <= 0 {
		every = 2 * time.Second
	}
	st, err := w.LoadState(ctx)
	if err != nil {
		return err
	}
	w.Counters.Seq.Store(st.Seq)
	config, pinned := w.Config, false
	if w.Source != nil {
		if st.ConfigKnown {
			pinned = true // what was pending at the start may have been rated on the snapshot's
			if err := w.recordView(ctx, st, true); err != nil {
				return err
			}
		} else {
			// No snapshot, or one from before the sequence was kept: the configuration now,
			// recorded before anything is rated on it.
			st.ConfigSeq, st.ConfigKnown = w.Source.RatingSeq(), true
			if err := w.recordView(ctx, st, true); err != nil {
				return err
			}
			if err := w.save(ctx, st); err != nil {
				return err
			}
		}
		if err := w.Source.WaitFor(ctx, st.ConfigSeq); err != nil {
			return fmt.Errorf("waiting for config sequence %d: %w", st.ConfigSeq, err)
		}
		if config, err = w.Source.RatingView(st.ConfigSeq); err != nil {
			return err
		}
	}
	// The consumer always restarts right after the snapshot: acks are not durable across a
	// crash, the snapshot is.
	name := ConsumerName(w.Partition)
	if err := w.confirm(ctx); err != nil {
		return err
	}
	if err := w.JS.DeleteConsumer(ctx, w.UsageStream, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("resetting consumer %s: %w", name, err)
	}
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		FilterSubject: events.UsagePartitionFilter(w.Partition),
		AckPolicy:     jetstream.AckAllPolicy,
		MaxAckPending: 4 * batch,
		DeliverPolicy: jetstream.DeliverAllPolicy,
	}
	if st.Seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, st.Seq+1
	}
	cons, err := w.JS.CreateConsumer(ctx, w.UsageStream, cfg)
	if err != nil {
		return fmt.Errorf("creating consumer %s: %w", name, err)
	}
	// The messages pending now are all a worker stopped before this start can have rated: the
	// snapshot's configuration rates them again, newer ones after them.
	var pinnedLeft uint64
	if pinned {
		pinnedLeft = cons.CachedInfo().NumPending
	}
	lastSave, savedSeq := time.Now(), st.Seq
	// consistent is false while a batch's debits are not all acknowledged: only then may the
	// state be saved, or a restart would skip debits that were never stored.
	consistent := true
	defer func() {
		if errors.Is(context.Cause(ctx), ErrLeaseLost) {
			// Another process may own the partition now and have saved a newer state: an
			// older one written over it would make its next restart re-rate what it rated.
			return
		}
		if consistent && st.Seq != savedSeq {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := w.save(sctx, st); err != nil {
				w.Log.Error("saving rating snapshot on stop", "partition", w.Partition, "err", err)
			}
		}
	}()
	var futures []jetstream.PubAckFuture
	idle := true
	// next is a fetch already under way: while a batch's debits are being acknowledged the
	// following batch is on its way, so the loop does not pay both round trips in series.
	var next jetstream.MessageBatch
	b := newBatch()
	// newerConfig moves to the latest configuration, if there is a newer one, when the state is
	// consistent: at a batch's first message (a batch ends early when a newer one comes), so
	// an event is rated on the newest configuration this process knows when its turn comes.
	newerConfig := func() error {
		if w.Source == nil || pinnedLeft > 0 {
			return nil
		}
		latest := w.Source.RatingSeq()
		if latest <= st.ConfigSeq {
			return nil
		}
		// Saved before it is used, so that a restart rates what follows on it too.
		prev := st.ConfigSeq
		st.ConfigSeq = latest
		if err := w.recordView(ctx, st, false); err != nil {
			st.ConfigSeq = prev
			return err
		}
		if err := w.save(ctx, st); err != nil {
			st.ConfigSeq = prev
			return err
		}
		lastSave, savedSeq = time.Now(), st.Seq
		var err error
		config, err = w.Source.RatingView(latest)
		return err
	}
	// newerWaiting says a newer configuration is there to move to.
	newerWaiting := func() bool {
		return w.Source != nil && pinnedLeft == 0 && w.Source.RatingSeq() > st.ConfigSeq
	}
	// write sends the batch's ledger entries; settle waits until they are stored, then
	// acknowledges the batch up to last.
	write := func() error {
		if len(b.order) > 0 {
			if err := w.confirm(ctx); err != nil {
				return err
			}
		}
		fs, err := w.flush(b)
		futures = append(futures, fs...)
		return err
	}
	settle := func(last jetstream.Msg) error {
		if err := waitAll(ctx, futures); err != nil {
			// The state has moved past debits that may not be stored: start again from the
			// snapshot rather than carry on.
			return fmt.Errorf("writing debits: %w", err)
		}
		consistent = true
		if err := last.Ack(); err != nil {
			w.Log.Debug("ack", "err", err) // progress lives in the snapshot, not in acks
		}
		return nil
	}
	for ctx.Err() == nil {
		msgs := next
		next = nil
		if msgs == nil {
			if idle {
				msgs, err = cons.Fetch(1, jetstream.FetchMaxWait(time.Second))
			} else {
				msgs, err = cons.Fetch(batch, jetstream.FetchMaxWait(linger))
			}
			if err != nil {
				return fmt.Errorf("fetching: %w", err)
			}
		}
		var last jetstream.Msg
		futures = futures[:0]
		b.reset()
		for m := range msgs.Messages() {
			if last != nil && newerWaiting() {
				// A newer configuration came while the batch was open: what the batch rated
				// so far is written and settled first, so that the rest is rated on the newer
				// one from a point recorded, like any batch start. An event is rated on the
				// newest configuration this process knows when its turn comes, not on the one
				// in force when a fetch began up to --rating-linger earlier.
				if err := write(); err != nil {
					return err
				}
				if err := settle(last); err != nil {
					return err
				}
				w.Counters.Batches.Add(1)
				futures = futures[:0]
				b.reset()
				last = nil
			}
			if last == nil {
				if err := newerConfig(); err != nil {
					return err
				}
				consistent = false
			}
			if err := w.rate(st, config, m, b); err != nil {
				return err
			}
			last = m
			if pinnedLeft > 0 {
				pinnedLeft--
			}
		}
		if err := write(); err != nil {
			return err
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetching: %w", err)
		}
		if last == nil {
			consistent, idle = true, true
			// Idle: what the last batches rated is saved once it is due, not only after the
			// next batch — a quiet partition's snapshot would otherwise lag for as long as it
			// stays quiet (a restart re-rates all of that, and replay checks only up to it).
			if st.Seq != savedSeq && time.Since(lastSave) >= every {
				if err := w.save(ctx, st); err != nil {
					return err
				}
				lastSave, savedSeq = time.Now(), st.Seq
			}
			continue
		}
		idle = false
		w.Counters.Batches.Add(1)
		// Messages past this batch are delivered only after its own, and a failure below
		// restarts from the snapshot with a fresh consumer, so prefetching is safe. While
		// usage flows the fetch may wait a little to fill: bigger batches mean fewer ledger
		// entries (one per customer per batch) and fewer round trips per event.
		if next, err = cons.Fetch(batch, jetstream.FetchMaxWait(linger)); err != nil {
			return fmt.Errorf("fetching: %w", err)
		}
		if err := settle(last); err != nil {
			return err
		}
		w.Counters.Seq.Store(st.Seq)
		if time.Since(lastSave) >= every {
			if err := w.save(ctx, st); err != nil {
				return err
			}
			lastSave, savedSeq = time.Now(), st.Seq
		}
	}
	return nil
}

// batch collects a fetch's results per customer, in order of first appearance. One batch
// serves every fetch of a worker: reset keeps the entries and their slices for the next one
// (the flushed entries live on only as encoded bytes), so a fetch allocates no new ones.
type batch struct {
	order []batchKey
	by    map[batchKey]*events.UsageRated
	spare []*events.UsageRated
}

func (b *batch) reset() {
	for _, k := range b.order {
		r := b.by[k]
		*r = events.UsageRated{Debits: r.Debits[:0], Unrated: r.Unrated[:0], Quotas: r.Quotas[:0]}
		b.spare = append(b.spare, r)
	}
	clear(b.by)
	b.order = b.order[:0]
}

type batchKey struct {
	scope    events.Scope
	customer string
}

func newBatch() *batch { return &batch{by: map[batchKey]*events.UsageRated{}} }

func (b *batch) add(scope events.Scope, customer string, seq uint64, out Output) {
	k := batchKey{scope, customer}
	r := b.by[k]
	if r == nil {
		if n := len(b.spare); n > 0 {
			r, b.spare = b.spare[n-1], b.spare[:n-1]
		} else {
			r = &events.UsageRated{}
		}
		r.Customer, r.FirstSeq = customer, seq
		b.by[k] = r
		b.order = append(b.order, k)
	}
	r.LastSeq = seq
	r.Debits = append(r.Debits, out.Debits...)
	r.Quotas = append(r.Quotas, out.Quotas...)
	if out.Unrated != nil {
		r.Unrated = append(r.Unrated, *out.Unrated)
	}
}

// rate folds one message into the state and adds what it produced to the batch.
func (w *Worker) rate(st *State, config Config, m jetstream.Msg, b *batch) error {
	md, err := m.Metadata()
	if err != nil {
		return fmt.Errorf("message metadata: %w", err)
	}
	seq := md.Sequence.Stream
	if seq <= st.Seq {
		return nil
	}
	r, err := st.RateMessage(seq, m.Subject(), m.Data(), md.Timestamp, config)
	if err != nil {
		return err
	}
	if r.Malformed != nil {
		w.Counters.Malformed.Add(1)
		w.Log.Warn("skipping malformed usage message", "seq", seq, "subject", m.Subject(), "err", r.Malformed)
		return nil
	}
	if r.FutureDated {
		w.Counters.FutureDated.Add(1)
		w.Log.Debug("usage dated ahead of the stream; rated at the stream's time", "seq", seq, "event", r.Usage.ID, "stream_time", md.Timestamp)
	}
	out := r.Out
	w.Counters.Events.Add(1)
	if !out.Metered {
		w.Counters.Unmetered.Add(1)
		return nil
	}
	for _, d := range out.Debits {
		w.Counters.Debits.Add(1)
		if d.Kind == events.KindCreditBack {
			w.Counters.CreditBacks.Add(1)
		}
	}
	if out.Unrated != nil {
		w.Counters.Unrated.Add(1)
	}
	b.add(r.Scope, r.Usage.Customer, seq, out)
	return nil
}

// flush writes one usage.rated.v1 entry per customer of the batch.
func (w *Worker) flush(b *batch) ([]jetstream.PubAckFuture, error) {
	fs := make([]jetstream.PubAckFuture, 0, len(b.order))
	for _, k := range b.order {
		r := b.by[k]
		r.ID = "rtd_" + shortHash(k.scope.Product, k.scope.Env, k.customer, strconv.FormatUint(r.FirstSeq, 10), strconv.FormatUint(r.LastSeq, 10))
		// A fresh buffer per entry: an async publish keeps its message until acknowledged.
		data, err := r.AppendJSON(make([]byte, 0, 256+384*len(r.Debits)))
		if err != nil {
			return nil, err
		}
		f, err := w.publish(events.LedgerSubject(k.scope.Product, k.scope.Env, k.customer), events.TypeUsageRated, k.scope, r.ID, data)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
		w.Counters.Entries.Add(1)
	}
	return fs, nil
}

func (w *Worker) publish(subject, typ string, scope events.Scope, id string, data []byte) (jetstream.PubAckFuture, error) {
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{typ}}}
	// With room for the acknowledgements to catch up: too many in flight is a busy server, not
	// a failure (the default 200 ms wait restarted the partition from its snapshot).
	f, err := w.JS.PublishMsgAsync(msg, jetstream.WithMsgID(scope.Product+":"+scope.Env+":"+id), jetstream.WithStallWait(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("publishing %s: %w", typ, err)
	}
	return f, nil
}

func waitAll(ctx context.Context, fs []jetstream.PubAckFuture) error {
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return errors.New("timed out waiting for ledger acknowledgements")
		}
	}
	return nil
}
