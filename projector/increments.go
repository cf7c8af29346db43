package projector

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// Increments admits quota increments with group commit per customer. Every ledger append is
// decided on the customer's state and written with the expected last subject sequence, so two
// appends for one customer cannot be in flight at once: one of them loses the race and tries
// again. A busy customer — one API consumer calling as fast as it can — would pay for that with
// retries and tail latency. Instead, increments for a customer that arrive while one of its
// appends is in flight wait for it and then go together: they are decided one after another,
// each on the state the ones before it leave, and the admitted ones are written as one
// quota.incremented.v1 entry. Each request still gets its own all-or-nothing answer, and the
// write is still linearizable with every other process's appends to that customer.
type Increments struct {
	JS     jetstream.JetStream
	Stream func(context.Context) (jetstream.Stream, error)
	Ledger *Ledger

	// Requests counts increments decided; Entries the ledger entries that wrote the admitted
	// ones (Requests/Entries is the batching achieved).
	Requests, Entries atomic.Int64

	mu     sync.Mutex
	queues map[accountKey]*incQueue
}

type incQueue struct {
	pending []*incRequest
}

type incRequest struct {
	ctx     context.Context
	quotas  []events.Quota
	amounts []events.Decimal
	now     time.Time
	done    chan struct{}

	// The outcome, set before done is closed.
	statuses []QuotaStatus
	err      error
}

// errNoneAdmitted makes AppendDecided write nothing when every request of a batch is refused
// (and decide again on a fresh state first, as for any refusal).
var errNoneAdmitted = errors.New("no increment of the batch admitted")

// Increment admits amounts against quotas for the customer all or nothing, as DecideIncrement
// decides, and returns the statuses after it (or a *QuotaError / *FieldError).
func (in *Increments) Increment(ctx context.Context, scope events.Scope, customer string, quotas []events.Quota, amounts []events.Decimal, now time.Time) ([]QuotaStatus, error) {
	req := &incRequest{ctx: ctx, quotas: quotas, amounts: amounts, now: now, done: make(chan struct{})}
	k := accountKey{scope, customer}
	in.mu.Lock()
	if in.queues == nil {
		in.queues = map[accountKey]*incQueue{}
	}
	q, busy := in.queues[k]
	if !busy {
		q = &incQueue{}
		in.queues[k] = q
	}
	q.pending = append(q.pending, req)
	in.mu.Unlock()
	if !busy {
		// This request leads: it writes the batch it is in (itself, and any that arrived
		// since), then hands the queue to a goroutine if more are waiting, so its answer does
		// not wait for later batches.
		if in.commitNext(k, q) {
			go func() {
				for in.commitNext(k, q) {
				}
			}()
		}
	}
	select {
	case <-req.done:
		return req.statuses, req.err
	case <-ctx.Done():
		// A request the batch already took may still be written (as with any write whose
		// answer is lost); one not yet taken is passed over.
		return nil, ctx.Err()
	}
}

// commitNext writes the requests waiting for the customer as one batch and reports whether
// more arrived meanwhile; when none did, the queue is retired.
func (in *Increments) commitNext(k accountKey, q *incQueue) bool {
	in.mu.Lock()
	batch := q.pending
	q.pending = nil
	in.mu.Unlock()
	if len(batch) > 0 {
		in.commit(k, batch)
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if len(q.pending) == 0 {
		delete(in.queues, k)
		return false
	}
	return true
}

// commit decides and writes one batch, and answers each of its requests.
func (in *Increments) commit(k accountKey, batch []*incRequest) {
	live := batch[:0:0]
	for _, r := range batch {
		if r.ctx.Err() != nil {
			r.err = r.ctx.Err()
			close(r.done)
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	stream, err := in.Stream(live[0].ctx)
	if err == nil {
		ctx := context.WithoutCancel(live[0].ctx) // the batch is not the leader's alone
		_, err = AppendDecided(ctx, in.JS, stream, in.Ledger, k.Scope, k.Customer, "", func(acct *Account) (string, any, error) {
			// Admitted requests are applied to a copy of the quota state, so each next
			// request is decided on the state the ones before it leave.
			a := acct.quotaCopy()
			var e events.QuotaIncremented
			for _, r := range live {
				inc, st, err := a.DecideIncrement(r.quotas, r.amounts, r.now)
				r.statuses, r.err = st, err
				if err != nil {
					continue
				}
				for _, it := range inc.Items {
					a.applyQuotaUse(it)
				}
				if len(e.Items) == 0 {
					e.Customer, e.At = inc.Customer, inc.At
				}
				e.Items = append(e.Items, inc.Items...)
			}
			if len(e.Items) == 0 {
				return "", nil, errNoneAdmitted
			}
			return events.TypeQuotaIncremented, e, nil
		})
		in.Requests.Add(int64(len(live)))
		if err == nil || errors.Is(err, ErrNotVisibleYet) {
			in.Entries.Add(1)
		}
	}
	for _, r := range live {
		switch {
		case errors.Is(err, errNoneAdmitted):
			// Every request keeps its own refusal.
		case err != nil && !errors.Is(err, ErrNotVisibleYet):
			r.statuses, r.err = nil, err
		case err != nil && r.err == nil:
			r.err = err // written, not yet visible: a retry answers it
		}
		close(r.done)
	}
}
