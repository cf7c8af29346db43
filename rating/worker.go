package rating

import (
	"bytes"
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
	Events, Debits, CreditBacks, Unrated, Unmetered, Malformed, Snapshots atomic.Int64
	Seq                                                                   atomic.Uint64
}

// Worker rates one partition of the usage stream.
type Worker struct {
	JS            jetstream.JetStream
	UsageStream   string
	Snapshots     jetstream.ObjectStore
	Config        Config
	Partition     int
	Batch         int           // messages per fetch; default 1000
	SnapshotEvery time.Duration // default 2s
	Log           *slog.Logger
	Counters      Counters
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

func (w *Worker) save(ctx context.Context, st *State) error {
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

func (w *Worker) run(ctx context.Context) error {
	batch := w.Batch
	if batch <= 0 {
		batch = 1000
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
	// The consumer always restarts right after the snapshot: acks are not durable across a
	// crash, the snapshot is.
	name := ConsumerName(w.Partition)
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
	lastSave, savedSeq := time.Now(), st.Seq
	// consistent is false while a batch's debits are not all acknowledged: only then may the
	// state be saved, or a restart would skip debits that were never stored.
	consistent := true
	defer func() {
		if consistent && st.Seq != savedSeq {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := w.save(sctx, st); err != nil {
				w.Log.Error("saving rating snapshot on stop", "partition", w.Partition, "err", err)
			}
		}
	}()
	var futures []jetstream.PubAckFuture
	for ctx.Err() == nil {
		msgs, err := cons.Fetch(batch, jetstream.FetchMaxWait(500*time.Millisecond))
		if err != nil {
			return fmt.Errorf("fetching: %w", err)
		}
		var last jetstream.Msg
		futures = futures[:0]
		consistent = false
		for m := range msgs.Messages() {
			fs, err := w.rate(st, m)
			if err != nil {
				return err
			}
			futures = append(futures, fs...)
			last = m
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("fetching: %w", err)
		}
		if last == nil {
			consistent = true
			continue
		}
		if err := waitAll(ctx, futures); err != nil {
			// The state has moved past debits that may not be stored: start again from the
			// snapshot rather than carry on.
			return fmt.Errorf("writing debits: %w", err)
		}
		consistent = true
		if err := last.Ack(); err != nil {
			w.Log.Debug("ack", "err", err) // progress lives in the snapshot, not in acks
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

// rate folds one message and publishes what it produced.
func (w *Worker) rate(st *State, m jetstream.Msg) ([]jetstream.PubAckFuture, error) {
	md, err := m.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message metadata: %w", err)
	}
	seq := md.Sequence.Stream
	if seq <= st.Seq {
		return nil, nil
	}
	addr, err := events.ParseUsageSubject(m.Subject())
	var ev events.Usage
	if err == nil {
		ev, err = events.DecodeUsage(m.Data())
	}
	if err == nil && ev.Customer != addr.Customer {
		err = fmt.Errorf("customer %q in the body, %q in the subject", ev.Customer, addr.Customer)
	}
	if err != nil {
		// Only a producer publishing straight to JetStream can get here; the event cannot be
		// rated or even named, so it is counted and passed over.
		st.Seq = seq
		w.Counters.Malformed.Add(1)
		w.Log.Warn("skipping malformed usage message", "seq", seq, "subject", m.Subject(), "err", err)
		return nil, nil
	}
	if ev.Time.IsZero() {
		ev.Time = md.Timestamp.UTC()
	}
	scope := events.Scope{Product: addr.Product, Env: addr.Env}
	out, err := st.Rate(seq, scope, ev, w.Config)
	if err != nil {
		return nil, err
	}
	w.Counters.Events.Add(1)
	if !out.Metered {
		w.Counters.Unmetered.Add(1)
		return nil, nil
	}
	subject := events.LedgerSubject(scope.Product, scope.Env, ev.Customer)
	var fs []jetstream.PubAckFuture
	for _, d := range out.Debits {
		typ := events.TypeUsageDebited
		if d.Kind == events.KindCreditBack {
			w.Counters.CreditBacks.Add(1)
		}
		f, err := w.publish(subject, typ, scope, d.ID, d)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
		w.Counters.Debits.Add(1)
	}
	if out.Unrated != nil {
		f, err := w.publish(subject, events.TypeUsageUnrated, scope, out.Unrated.ID, out.Unrated)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
		w.Counters.Unrated.Add(1)
	}
	return fs, nil
}

func (w *Worker) publish(subject, typ string, scope events.Scope, id string, v any) (jetstream.PubAckFuture, error) {
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(v); err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: subject, Data: bytes.TrimSuffix(buf.Bytes(), []byte("\n")), Header: nats.Header{events.HeaderType: []string{typ}}}
	f, err := w.JS.PublishMsgAsync(msg, jetstream.WithMsgID(scope.Product+":"+scope.Env+":"+id))
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
