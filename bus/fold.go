package bus

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// FoldOrdered reads stream in order, from sequence from (1: from the start) through to, and
// hands each message to fold with its stream sequence and the time the stream received it.
// It is what replay's rebuilds share (the ledger's projection, rating's partitions).
//
// Receiving and folding run on two goroutines joined by a short queue of batches: a rebuild is
// bound by the slower of the two rather than by their sum, which on a machine with two or more
// cores is most of the difference between folding a stream and merely reading it. Messages are
// still folded one at a time, in stream order, all on one goroutine. progress, when not nil,
// is called with the sequence reached as each batch is queued. A silence of stall ends the read
// with ErrStalled (watchStall: no timer per message).
func FoldOrdered(ctx context.Context, js jetstream.JetStream, stream string, from, to uint64, stall time.Duration,
	fold func(seq uint64, received time.Time, m jetstream.Msg), progress func(seq uint64)) error {
	if to < max(from, 1) {
		return nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from}
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("reading %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return fmt.Errorf("reading %s: %w", stream, err)
	}
	defer DropOrdered(ctx, js, stream, cons)
	defer it.Stop()

	type entry struct {
		seq      uint64
		received time.Time
		msg      jetstream.Msg
	}
	const batchSize = 256
	batches := make(chan []entry, 8)
	free := make(chan []entry, 10) // batches handed back for reuse, so the queue does not allocate
	folded := make(chan struct{})
	go func() {
		defer close(folded)
		for b := range batches {
			for _, e := range b {
				fold(e.seq, e.received, e.msg)
			}
			select {
			case free <- b[:0]:
			default:
			}
		}
	}()

	readCtx, stalled := context.WithCancelCause(ctx)
	defer stalled(nil)
	var received atomic.Uint64
	go watchStall(readCtx, &received, stall, stalled)

	var readErr error
	batch := make([]entry, 0, batchSize)
	for {
		m, err := it.Next(jetstream.NextContext(readCtx))
		if err != nil {
			if cause := context.Cause(readCtx); cause != nil && ctx.Err() == nil {
				err = cause
			}
			readErr = fmt.Errorf("reading %s toward sequence %d: %w", stream, to, err)
			break
		}
		received.Add(1)
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		if seq > to {
			break
		}
		batch = append(batch, entry{seq, md.Timestamp, m})
		done := seq >= to || md.NumPending == 0
		if len(batch) == batchSize || done {
			if progress != nil {
				progress(seq)
			}
			batches <- batch
			select {
			case batch = <-free:
			default:
				batch = make([]entry, 0, batchSize)
			}
			if ctx.Err() != nil && !done {
				readErr = ctx.Err()
				break
			}
		}
		if done {
			break
		}
	}
	if len(batch) > 0 && readErr == nil {
		batches <- batch
	}
	close(batches)
	<-folded
	return readErr
}

// ErrStalled is why a read of a stream ends that waited too long for its next message
// (watchStall): the stream said it holds what was asked, so the messages are gone or
// unreachable.
var ErrStalled = errors.New("no entry arrived for a while: the stream does not hold the entries it reported")

// watchStall cancels ctx with ErrStalled once received has not moved for after, for a read that
// counts its messages in received. Watched from a goroutine rather than given to each Next as
// a maximum wait: that makes a timer per message, and reading is most of what a rebuild costs.
func watchStall(ctx context.Context, received *atomic.Uint64, after time.Duration, stalled context.CancelCauseFunc) {
	tick := time.NewTicker(max(after/8, time.Millisecond))
	defer tick.Stop()
	last, since := received.Load(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if n := received.Load(); n != last {
				last, since = n, now
			} else if now.Sub(since) >= after {
				stalled(fmt.Errorf("%w (%s without one)", ErrStalled, after))
				return
			}
		}
	}
}
