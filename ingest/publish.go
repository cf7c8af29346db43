package ingest

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
)

// MeterSource gives the meters that count a type of event in a scope.
type MeterSource interface {
	MetersFor(scope events.Scope, eventType string) []events.Meter
}

// Result is the answer to one ingest request.
type Result struct {
	Accepted   int         `json:"accepted"`
	Duplicates int         `json:"duplicates"`
	Rejected   []Rejection `json:"rejected"`
}

// Counters are the running totals /metrics shows.
type Counters struct {
	Accepted, Duplicates, Rejected, Conflicts atomic.Int64
}

// CustomerResolver maps allot's UUID for a customer to its external id.
type CustomerResolver interface {
	ResolveCustomer(scope events.Scope, id string) string
}

// Ingester validates and publishes usage events.
type Ingester struct {
	js      jetstream.JetStream
	stream  string
	meters  MeterSource
	now     func() time.Time
	Counter Counters
	// Customers, when set, lets events name a customer by allot's UUID; they are stored
	// under the external id, so a customer's events share one subject whatever they use.
	Customers CustomerResolver

	mu     sync.Mutex
	handle jetstream.Stream // the usage stream, looked up once
}

// New returns an Ingester publishing to the usage stream named stream.
func New(js jetstream.JetStream, stream string, meters MeterSource, now func() time.Time) *Ingester {
	if now == nil {
		now = time.Now
	}
	return &Ingester{js: js, stream: stream, meters: meters, now: now}
}

// Ingest parses body and stores every valid event, returning once JetStream acknowledged
// them all. A request-level problem (bad JSON, wrong shape, the stream unavailable) means
// nothing new was reported as stored; retrying the same body is always safe.
func (in *Ingester) Ingest(ctx context.Context, scope events.Scope, media string, body []byte) (Result, *problem.Problem) {
	cands, rejs, p := Parse(scope, media, body, in.meters, in.now())
	if p != nil {
		return Result{}, p
	}
	if in.Customers != nil {
		for i := range cands {
			if ext := in.Customers.ResolveCustomer(scope, cands[i].Event.Customer); ext != cands[i].Event.Customer {
				cands[i].Event.Customer, cands[i].Encoded = ext, nil
			}
		}
	}
	res := Result{Rejected: rejs}
	if res.Rejected == nil {
		res.Rejected = []Rejection{}
	}
	if len(cands) > 0 {
		acc, dup, conflicts, err := in.publish(ctx, scope, cands)
		if err != nil {
			return Result{}, &problem.Problem{
				Type: problem.TypeBase + problem.Unavailable, Title: problem.Title(problem.Unavailable), Status: http.StatusServiceUnavailable,
				Detail:     "storing events failed part way (" + err.Error() + "); retry the whole request: events already stored will be counted as duplicates",
				RetryAfter: 1,
			}
		}
		res.Accepted, res.Duplicates = acc, dup
		res.Rejected = append(res.Rejected, conflicts...)
		sortRejections(res.Rejected)
	}
	in.Counter.Accepted.Add(int64(res.Accepted))
	in.Counter.Duplicates.Add(int64(res.Duplicates))
	in.Counter.Rejected.Add(int64(len(res.Rejected)))
	return res, nil
}

func (in *Ingester) publish(ctx context.Context, scope events.Scope, cands []Candidate) (accepted, duplicates int, conflicts []Rejection, err error) {
	futures := make([]jetstream.PubAckFuture, len(cands))
	for i, c := range cands {
		data := c.Encoded
		if data == nil {
			var err error
			if data, err = c.Event.Encode(); err != nil {
				return 0, 0, nil, fmt.Errorf("encoding event %d: %w", c.Index, err)
			}
		}
		msg := &nats.Msg{
			Subject: events.UsageSubject(scope.Product, scope.Env, c.Event.Customer),
			Data:    data,
			Header: nats.Header{
				events.HeaderType:      []string{events.TypeUsageRecorded},
				events.HeaderEventHash: []string{c.Hash},
			},
		}
		// Too many publishes in flight (every request's, together) waits for room — backpressure
		// on the caller — rather than failing the batch after the default 200 ms.
		f, err := in.js.PublishMsgAsync(msg, jetstream.WithMsgID(events.UsageMsgID(scope.Product, scope.Env, c.Event.ID)), jetstream.WithStallWait(5*time.Second))
		if err != nil {
			return 0, 0, nil, fmt.Errorf("publishing event %d: %w", c.Index, err)
		}
		futures[i] = f
	}
	timeout := time.NewTimer(30 * time.Second)
	defer timeout.Stop()
	var firstErr error
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if !ack.Duplicate {
				accepted++
				continue
			}
			same, err := in.sameAsStored(ctx, ack.Sequence, cands[i].Hash)
			switch {
			case err != nil && firstErr == nil:
				firstErr = err
			case err != nil:
			case same:
				duplicates++
			default:
				in.Counter.Conflicts.Add(1)
				conflicts = append(conflicts, Rejection{Index: cands[i].Index, Problem: problem.Fieldf(problem.ConflictingDuplicate, http.StatusConflict, "id",
					"event id %q was already stored (stream sequence %d) with a different payload; the first one stands", cands[i].Event.ID, ack.Sequence)})
			}
		case err := <-f.Err():
			if firstErr == nil {
				firstErr = err
			}
		case <-ctx.Done():
			return 0, 0, nil, ctx.Err()
		case <-timeout.C:
			return 0, 0, nil, errors.New("timed out waiting for JetStream acknowledgements")
		}
	}
	if firstErr != nil {
		return 0, 0, nil, firstErr
	}
	return accepted, duplicates, conflicts, nil
}

// sameAsStored compares a duplicate with the event JetStream already holds under its id.
func (in *Ingester) sameAsStored(ctx context.Context, seq uint64, hash string) (bool, error) {
	in.mu.Lock()
	st := in.handle
	in.mu.Unlock()
	if st == nil {
		var err error
		if st, err = in.js.Stream(ctx, in.stream); err != nil {
			return false, fmt.Errorf("checking duplicate: %w", err)
		}
		in.mu.Lock()
		in.handle = st
		in.mu.Unlock()
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return true, nil // aged out since; the dedup window still vouched for the id
		}
		return false, fmt.Errorf("checking duplicate at sequence %d: %w", seq, err)
	}
	// A producer publishing straight to JetStream may send no hash; then we cannot tell, and
	// the id alone decides.
	stored := m.Header.Get(events.HeaderEventHash)
	return stored == "" || stored == hash, nil
}

func sortRejections(r []Rejection) {
	slices.SortFunc(r, func(a, b Rejection) int { return a.Index - b.Index })
}
