package projector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// groupCommit batches the requests for one account that arrive while one of its appends is
// in flight: the first request leads, writes the batch it is in, and hands the queue on.
type groupCommit[R any] struct {
	mu     sync.Mutex
	queues map[accountKey]*[]R
}

// submit queues r for account k. With no batch of k in flight, the caller leads: it commits
// the batch it is in (itself, and any that arrived since) and hands the queue to a goroutine
// if more are waiting, so its own answer does not wait for later batches.
func (g *groupCommit[R]) submit(k accountKey, r R, commit func(k accountKey, batch []R)) {
	g.mu.Lock()
	if g.queues == nil {
		g.queues = map[accountKey]*[]R{}
	}
	q, busy := g.queues[k]
	if !busy {
		q = new([]R)
		g.queues[k] = q
	}
	*q = append(*q, r)
	g.mu.Unlock()
	if busy {
		return
	}
	if g.commitNext(k, q, commit) {
		go func() {
			for g.commitNext(k, q, commit) {
			}
		}()
	}
}

// commitNext commits the requests waiting for k as one batch and reports whether more arrived
// meanwhile; when none did, the queue is retired.
func (g *groupCommit[R]) commitNext(k accountKey, q *[]R, commit func(k accountKey, batch []R)) bool {
	g.mu.Lock()
	batch := *q
	*q = nil
	g.mu.Unlock()
	if len(batch) > 0 {
		commit(k, batch)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(*q) == 0 {
		delete(g.queues, k)
		return false
	}
	return true
}

// waiter is what a group-committed request shares with the batch that answers it.
type waiter struct {
	ctx  context.Context
	done chan struct{}
	err  error // set before done is closed
}

func newWaiter(ctx context.Context) waiter { return waiter{ctx: ctx, done: make(chan struct{})} }

func (w *waiter) wait() *waiter { return w }

// liveWaiters answers the requests of a batch whose callers gave up, and returns the rest.
func liveWaiters[R interface{ wait() *waiter }](batch []R) []R {
	live := batch[:0:0]
	for _, r := range batch {
		if w := r.wait(); w.ctx.Err() != nil {
			w.err = w.ctx.Err()
			close(w.done)
			continue
		}
		live = append(live, r)
	}
	return live
}

// answerAll answers a batch's requests after its write, whose outcome is err: each keeps its
// own refusal when none was admitted (errNoneAdmitted); a failed write fails them all (lost
// clears what a request would otherwise report); written but not yet visible, the admitted
// ones are told to retry, which answers them.
func answerAll[R interface{ wait() *waiter }](live []R, err error, lost func(R)) {
	for _, r := range live {
		w := r.wait()
		switch {
		case errors.Is(err, errNoneAdmitted):
		case err != nil && !errors.Is(err, ErrNotVisibleYet):
			w.err = err
			lost(r)
		case err != nil && w.err == nil:
			w.err = err
		}
		close(w.done)
	}
}

// batchWriter is where a group committer writes: the stream, the ledger, and its counters.
// JS and Stream reach the ledger stream; Ledger is this process's projection.
type batchWriter struct {
	JS     jetstream.JetStream
	Stream func(context.Context) (jetstream.Stream, error)
	Ledger *Ledger

	// Requests counts requests decided; Entries the ledger entries that wrote the accepted
	// ones (Requests/Entries is the batching achieved).
	Requests, Entries atomic.Int64
}

// write decides the live requests of a batch with decide (AppendDecided: on the account in
// place, again after a lost race) and appends the entry; the outcome is for answerAll.
func (bw *batchWriter) write(ctx context.Context, k accountKey, requests int, decide func(*Account) (string, any, error)) error {
	stream, err := bw.Stream(ctx)
	if err != nil {
		return err
	}
	// The batch is not the leader's alone: its caller giving up does not stop the write.
	_, err = AppendDecided(context.WithoutCancel(ctx), bw.JS, stream, bw.Ledger, k.Scope, k.Customer, "", decide)
	bw.Requests.Add(int64(requests))
	if err == nil || errors.Is(err, ErrNotVisibleYet) {
		bw.Entries.Add(1)
	}
	return err
}
