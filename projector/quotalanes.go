package projector

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// QuotaCommands writes quota commands — increments, resets, adjustments — to their customers'
// quota lanes (events.QuotaLaneSubject), with group commit across customers.
//
// Every append decided on state carries an expected last subject sequence. On a customer's own
// subject that makes one JetStream message per request, whose round trip bounds what a process
// can admit across many customers (~21k increments/s on 2 cores, below a Redis+Lua service).
// A lane is shared by many customers, so the increments in flight for all of them go together:
// the first request leads, the ones that arrive while its entry is in flight wait and form the
// next batch, each is decided on the state the ones before it leave, and the admitted ones are
// written as one quota.increments.v1 entry. A reset, an adjustment or an increment carrying an
// Idempotency-Key is written alone, in its place in the lane's order.
//
// Lane entries are folded by every projection in stream order like any entry (never applied
// ahead of the stream), so the live state is the replay's. All of a customer's quota commands
// go through its lane, so they are linearizable per customer (per lane, in fact) with any
// number of processes; rated usage counts on the customer's own subject unconditionally, as it
// always did.
type QuotaCommands struct {
	JS     jetstream.JetStream
	Stream func(context.Context) (jetstream.Stream, error)
	Ledger *Ledger

	// Lanes is the number of quota lanes per product and env (bus.QuotaLanes: the ledger
	// stream's, the same for every process); 1 if not set.
	Lanes int

	// Requests counts requests decided; Entries the ledger entries that wrote the accepted
	// ones (Requests/Entries is the batching achieved).
	Requests, Entries atomic.Int64

	batches groupCommit[*incRequest]
}

// NewQuotaCommands returns the quota lanes' writer, with one lane: it appends to the ledger
// stream (stream looks it up) and reads its decisions from l.
func NewQuotaCommands(js jetstream.JetStream, stream func(context.Context) (jetstream.Stream, error), l *Ledger) *QuotaCommands {
	return &QuotaCommands{JS: js, Stream: stream, Ledger: l, Lanes: 1}
}

type incRequest struct {
	waiter
	customer string
	// An increment has quotas and amounts (decided by DecideIncrement); any other command has
	// decide, which returns the entry to write for it.
	quotas  []events.Quota
	amounts []events.Decimal
	now     time.Time
	decide  func(a *Account) (string, any, error)
	msgID   string // the command's id (Idempotency-Key): written alone, deduplicated by JetStream

	statuses []QuotaStatus // the outcome with waiter.err, set before done is closed
}

// alone reports whether the request is written in an entry of its own.
func (r *incRequest) alone() bool { return r.decide != nil || r.msgID != "" }

// errNoneAdmitted: every request of an entry was refused, so nothing is written.
var errNoneAdmitted = errors.New("no increment of the batch admitted")

// Increment admits amounts against quotas for the customer all or nothing, as DecideIncrement
// decides, and returns the statuses after it (or a *QuotaError / *FieldError). msgID, when not
// empty, is the command's id: a retry of one already written is not counted again.
func (in *QuotaCommands) Increment(ctx context.Context, scope events.Scope, customer, msgID string, quotas []events.Quota, amounts []events.Decimal, now time.Time) ([]QuotaStatus, error) {
	req := &incRequest{waiter: newWaiter(ctx), customer: customer, quotas: quotas, amounts: amounts, now: now, msgID: msgID}
	return in.submit(ctx, scope, req)
}

// Command appends the quota entry decide returns for the customer (a reset, an adjustment) to
// the customer's lane, in order with the lane's increments. decide reads the account in place
// and must not keep it.
func (in *QuotaCommands) Command(ctx context.Context, scope events.Scope, customer, msgID string, decide func(a *Account) (string, any, error)) error {
	req := &incRequest{waiter: newWaiter(ctx), customer: customer, decide: decide, msgID: msgID}
	_, err := in.submit(ctx, scope, req)
	return err
}

func (in *QuotaCommands) submit(ctx context.Context, scope events.Scope, req *incRequest) ([]QuotaStatus, error) {
	lane := events.QuotaLane(req.customer, in.Lanes)
	in.batches.submit(accountKey{scope, events.QuotaLaneToken(lane)}, req, func(_ accountKey, batch []*incRequest) {
		in.commit(scope, lane, batch)
	})
	select {
	case <-req.done:
		return req.statuses, req.err
	case <-ctx.Done():
		// A request the batch already took may still be written (as with any write whose
		// answer is lost); one not yet taken is passed over.
		return nil, ctx.Err()
	}
}

// commit writes the requests of one batch of a lane in their order: runs of plain increments as
// one entry each, the others alone; and answers each request.
func (in *QuotaCommands) commit(scope events.Scope, lane int, batch []*incRequest) {
	live := liveWaiters(batch)
	for len(live) > 0 {
		n := 1
		if !live[0].alone() {
			for n < len(live) && !live[n].alone() {
				n++
			}
		}
		part := live[:n]
		live = live[n:]
		err := in.write(part[0].ctx, scope, lane, part)
		in.Requests.Add(int64(len(part)))
		answerAll(part, err, func(r *incRequest) { r.statuses = nil })
	}
}

// write decides reqs on this process's projection and appends the entry to the lane with the
// lane's expected last sequence; it returns once the projection has folded the entry, so the
// caller reads its own write. A lost race, or a refusal decided on a state that may be stale,
// reads the lane's true last sequence, waits for the projection to reach it, and decides again.
func (in *QuotaCommands) write(ctx context.Context, scope events.Scope, lane int, reqs []*incRequest) error {
	// The batch is not the leader's alone: its caller giving up does not stop the write.
	ctx = context.WithoutCancel(ctx)
	stream, err := in.Stream(ctx)
	if err != nil {
		return err
	}
	l := in.Ledger
	subject := events.QuotaLaneSubject(scope.Product, scope.Env, lane)
	deadline := time.Now().Add(10 * time.Second)
	fresh := false // whether the projection was caught up with the lane's true last sequence
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		backOff(attempt)
		var last uint64 // the lane's true last sequence, when fresh
		if fresh {
			if last, err = catchUp(ctx, in.JS, stream, subject, l); err != nil {
				return err
			}
		}
		var (
			typ, msgID string
			expect     uint64
			data       []byte
			known      bool
			decideErr  error
		)
		l.viewLane(scope, lane, func(account func(customer string) *Account, laneSeq uint64) {
			// The projection knows where the lane is from the entries it folded; a fresh read
			// says so too when the lane's last entry came before a snapshot it started from.
			expect = max(laneSeq, last)
			typ, msgID, data, known, decideErr = decideLane(account, reqs)
		})
		if known {
			return nil // a retry of a command already written: its effect stands
		}
		if decideErr != nil {
			if errors.Is(decideErr, errNoneAdmitted) && !fresh {
				fresh = true // never refuse on a state that may be stale
				continue
			}
			return decideErr
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{typ}}}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(expect)}
		if msgID != "" {
			msg.Header.Set(events.HeaderCommand, msgID)
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		ack, err := in.JS.PublishMsg(ctx, msg, opts...)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			// Another process appended first: decide again on the new state. The entry that
			// won is on its way to this projection; waiting for it costs no round trip, and
			// two processes busy on one lane halved its throughput re-reading the lane's last
			// sequence after every lost race. Only when it does not come soon is it asked for.
			if !l.waitLane(scope, lane, expect, time.Now().Add(50*time.Millisecond)) {
				fresh = true
			}
			continue
		}
		if err != nil {
			return err
		}
		if !ack.Duplicate { // a duplicate's entry is the first attempt's, not data: the fold brings it
			in.Entries.Add(1)
			if ok, err := l.applyInOrder(ack.Sequence, subject, typ, msgID, data); err != nil {
				return err
			} else if ok {
				return nil
			}
		}
		if !l.WaitFor(ack.Sequence, time.Now().Add(5*time.Second)) {
			// Written, but this process cannot show it yet: the caller retries with the same
			// Idempotency-Key and is answered once the projection catches up.
			return ErrNotVisibleYet
		}
		if ack.Duplicate {
			// The command was written before (a retry the account's recent command ids no
			// longer name): its effect is the first attempt's, and the answer is the state as
			// it stands, not this attempt's decision counted once more.
			for _, r := range reqs {
				if r.decide == nil {
					a, _ := l.Account(scope, r.customer)
					r.statuses = a.QuotaStatuses(r.quotas, make([]events.Decimal, len(r.quotas)), r.now)
				}
			}
		}
		return nil
	}
	return errors.New("too much contention on this quota lane; retry")
}

// decideLane decides the requests of one lane entry on the accounts as account gives them
// (in place: they are only read) and encodes the entry. Plain increments are applied to copies
// of their customers' quota state as they are admitted, so each is decided on the state the
// ones before it leave; each request's own outcome is set on it, and errNoneAdmitted says
// every increment was refused. known reports that the one command of the entry was carried
// out already.
func decideLane(account func(customer string) *Account, reqs []*incRequest) (typ, msgID string, data []byte, known bool, err error) {
	// Each decision starts afresh: one made again (after a lost race, or on a fresh state after
	// a refusal on one that may have been stale) must not keep the earlier one's outcome.
	for _, r := range reqs {
		r.err, r.statuses = nil, nil
	}
	if r := reqs[0]; r.alone() {
		a := account(r.customer)
		if r.msgID != "" && a.HasCommand(r.msgID) {
			if r.decide == nil {
				r.statuses = a.QuotaStatuses(r.quotas, make([]events.Decimal, len(r.quotas)), r.now)
			}
			return "", "", nil, true, nil
		}
		var v any
		if r.decide != nil {
			if typ, v, err = r.decide(a); err != nil {
				return "", "", nil, false, err
			}
		} else {
			var inc events.QuotaIncremented
			if inc, r.statuses, r.err = a.DecideIncrement(r.quotas, r.amounts, r.now); r.err != nil {
				return "", "", nil, false, errNoneAdmitted
			}
			typ, v = events.TypeQuotaIncremented, inc
		}
		data, err = encode(v)
		return typ, r.msgID, data, false, err
	}
	// Only a customer with more requests later in the batch needs a copy to carry each
	// admitted increment to the next; the others (most, across many customers) are decided on
	// the account itself, read only.
	last := make(map[string]int, len(reqs))
	for i, r := range reqs {
		last[r.customer] = i
	}
	var copies map[string]*Account
	var e events.QuotaIncrements
	for i, r := range reqs {
		a, copied := copies[r.customer]
		if !copied {
			a = account(r.customer)
			if last[r.customer] > i {
				a, copied = a.quotaCopy(), true
				if copies == nil {
					copies = map[string]*Account{}
				}
				copies[r.customer] = a
			}
		}
		inc, st, err := a.DecideIncrement(r.quotas, r.amounts, r.now)
		r.statuses, r.err = st, err
		if err != nil {
			continue
		}
		if copied && last[r.customer] > i {
			a.applyIncrement(inc)
		}
		e.Increments = append(e.Increments, inc)
	}
	if len(e.Increments) == 0 {
		return "", "", nil, false, errNoneAdmitted
	}
	data, err = e.AppendJSON(make([]byte, 0, 256*len(e.Increments)))
	return events.TypeQuotaIncrements, "", data, false, err
}
