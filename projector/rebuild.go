package projector

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
)

// rebuildStall is how long Rebuild waits for the next message before giving up: the stream
// said it holds target, so a longer silence means those messages are gone or unreachable.
var rebuildStall = 30 * time.Second

// errStalled is why a read ends that waited rebuildStall for a message.
var errStalled = bus.ErrStalled

// Rebuild folds the ledger stream into l from the entry after l's sequence (the first, for a
// new projection) through target (the stream's last sequence when it was asked), as `allot
// replay` does, and returns how many entries it folded. progress, when not nil, is called now
// and then with the sequence reached.
//
// Receiving and folding run on two goroutines joined by a short queue of batches: a rebuild is
// bound by the slower of the two rather than by their sum, which on a machine with two or more
// cores is most of the difference between folding a stream and merely reading it. Entries are
// still folded one at a time, in stream order.
func Rebuild(ctx context.Context, js jetstream.JetStream, stream string, l *Ledger, target uint64, progress func(seq uint64)) (int, error) {
	from := l.Seq()
	if target <= from {
		return 0, nil
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from + 1}
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", stream, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return 0, fmt.Errorf("reading %s: %w", stream, err)
	}
	defer bus.DropOrdered(ctx, js, stream, cons)
	defer it.Stop()

	type entry struct {
		seq uint64
		msg jetstream.Msg
	}
	const batchSize = 256
	batches := make(chan []entry, 8)
	free := make(chan []entry, 10) // batches handed back for reuse, so the queue does not allocate
	folded := make(chan int, 1)
	go func() {
		n := 0
		for b := range batches {
			for _, e := range b {
				// An unreadable entry is skipped by every fold alike (the live projection
				// logs it), so the rebuilt state still compares.
				_ = l.ApplyMsg(e.seq, e.msg.Subject(), e.msg.Headers(), e.msg.Data())
				n++
			}
			select {
			case free <- b[:0]:
			default:
			}
		}
		folded <- n
	}()

	// A silence of rebuildStall ends the read. Watched from a goroutine rather than given to
	// each Next as a maximum wait: that makes a timer per message, and reading is most of what
	// a rebuild costs.
	readCtx, stalled := context.WithCancelCause(ctx)
	defer stalled(nil)
	var received atomic.Uint64
	go bus.WatchStall(readCtx, &received, rebuildStall, stalled)

	var readErr error
	batch := make([]entry, 0, batchSize)
	for {
		m, err := it.Next(jetstream.NextContext(readCtx))
		if err != nil {
			if cause := context.Cause(readCtx); cause != nil && ctx.Err() == nil {
				err = cause
			}
			readErr = fmt.Errorf("reading %s toward sequence %d: %w", stream, target, err)
			break
		}
		received.Add(1)
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		if seq > target {
			break
		}
		batch = append(batch, entry{seq, m})
		done := seq >= target || md.NumPending == 0
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
	n := <-folded
	return n, readErr
}
