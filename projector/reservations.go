package projector

import (
	"context"
	"github.com/nats-io/nats.go/jetstream"
	"time"

	"github.com/allot-dev/allot/events"
)

// Reservations creates holds with group commit per customer (QuotaCommands batches quota
// increments across the customers of a lane; holds stay on each customer's subject, which the
// ledger API lists and commits lock): holds for a customer that arrive while one of its appends is in flight wait for
// it and then go together, each decided on the effective balance the ones before it leave,
// and the accepted ones are written as one entry (reservations.created.v1, or
// reservation.created.v1 for one). Each request still gets its own answer, and the write is
// still linearizable with every other process's appends to that customer. A busy customer's
// holds were one append each, behind one another.
type Reservations struct {
	batchWriter
	batches groupCommit[*resRequest]
}

// NewReservations returns the group committer of holds writing to the ledger stream (stream
// looks it up) and folding into l.
func NewReservations(js jetstream.JetStream, stream func(context.Context) (jetstream.Stream, error), l *Ledger) *Reservations {
	return &Reservations{batchWriter: batchWriter{JS: js, Stream: stream, Ledger: l}}
}

type resRequest struct {
	waiter
	id     string
	amount events.Credits
	ttl    time.Duration
	now    time.Time
}

// Reserve holds amount for ttl as reservation id of the customer, as DecideReserve decides;
// the error is DecideReserve's refusal, or why the hold could not be written.
func (rs *Reservations) Reserve(ctx context.Context, scope events.Scope, customer, id string, amount events.Credits, ttl time.Duration, now time.Time) error {
	req := &resRequest{waiter: newWaiter(ctx), id: id, amount: amount, ttl: ttl, now: now}
	rs.batches.submit(accountKey{scope, customer}, req, rs.commit)
	select {
	case <-req.done:
		return req.err
	case <-ctx.Done():
		return ctx.Err() // a hold the batch already took may still be written
	}
}

// commit decides and writes one batch, and answers each of its requests.
func (rs *Reservations) commit(k accountKey, batch []*resRequest) {
	live := liveWaiters(batch)
	if len(live) == 0 {
		return
	}
	err := rs.write(live[0].ctx, k, len(live), func(a *Account) (string, any, error) {
		e := events.ReservationsCreated{Customer: k.Customer}
		for _, r := range live {
			c, err := a.DecideReserveAfter(r.id, r.amount, r.ttl, r.now, e.Reservations)
			if r.err = err; err == nil {
				e.Reservations = append(e.Reservations, c)
			}
		}
		switch len(e.Reservations) {
		case 0:
			return "", nil, errNoneAdmitted
		case 1:
			return events.TypeReservationCreated, e.Reservations[0], nil
		}
		return events.TypeReservationsCreated, e, nil
	})
	answerAll(live, err, func(*resRequest) {})
}
