package projector

import (
	"context"
	"errors"
	"github.com/nats-io/nats.go/jetstream"
	"time"

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
	batchWriter
	batches groupCommit[*incRequest]
}

// NewIncrements returns the group committer of quota increments writing to the ledger stream
// (stream looks it up) and folding into l.
func NewIncrements(js jetstream.JetStream, stream func(context.Context) (jetstream.Stream, error), l *Ledger) *Increments {
	return &Increments{batchWriter: batchWriter{JS: js, Stream: stream, Ledger: l}}
}

type incRequest struct {
	waiter
	quotas  []events.Quota
	amounts []events.Decimal
	now     time.Time

	statuses []QuotaStatus // the outcome with waiter.err, set before done is closed
}

// errNoneAdmitted makes AppendDecided write nothing when every request of a batch is refused
// (and decide again on a fresh state first, as for any refusal).
var errNoneAdmitted = errors.New("no increment of the batch admitted")

// Increment admits amounts against quotas for the customer all or nothing, as DecideIncrement
// decides, and returns the statuses after it (or a *QuotaError / *FieldError).
func (in *Increments) Increment(ctx context.Context, scope events.Scope, customer string, quotas []events.Quota, amounts []events.Decimal, now time.Time) ([]QuotaStatus, error) {
	req := &incRequest{waiter: newWaiter(ctx), quotas: quotas, amounts: amounts, now: now}
	in.batches.submit(accountKey{scope, customer}, req, in.commit)
	select {
	case <-req.done:
		return req.statuses, req.err
	case <-ctx.Done():
		// A request the batch already took may still be written (as with any write whose
		// answer is lost); one not yet taken is passed over.
		return nil, ctx.Err()
	}
}

// commit decides and writes one batch, and answers each of its requests.
func (in *Increments) commit(k accountKey, batch []*incRequest) {
	live := liveWaiters(batch)
	if len(live) == 0 {
		return
	}
	err := in.write(live[0].ctx, k, len(live), func(acct *Account) (string, any, error) {
		// Admitted requests are applied to a copy of the quota state, so each next request
		// is decided on the state the ones before it leave.
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
	answerAll(live, err, func(r *incRequest) { r.statuses = nil })
}
