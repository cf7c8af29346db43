package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// AppendDecided decides a command on the customer's current state and appends the entry to
// the customer's ledger subject with the expected last subject sequence. It first decides on
// this process's projection as it is (no round trip); JetStream refuses the append if anything
// else landed on the subject since, and then — as before refusing a command for business
// reasons — it reads the subject's true last sequence, waits for the projection to reach it,
// and decides again. It returns once this process's projection has applied the entry, so the
// caller reads its own write: applied at once from the acknowledgement (ApplyOwn) when the
// projection holds the customer's previous entry, else by waiting for the fold.
//
// msgID, when not empty, is the JetStream dedup key of the entry: a retried command (same
// Idempotency-Key) whose first attempt was written although its answer was lost — a node failing
// over, say — is recognised by JetStream and not written again.
// ErrNotVisibleYet is returned when an entry was written but the projection did not reach it
// in time; retrying the command (same Idempotency-Key) is safe.
var ErrNotVisibleYet = errors.New("written, but the projection has not caught up yet; retry")

// decide gets the customer's account in place, under the projection's read lock: it must only
// read it, not keep it, and not call into the ledger.
func AppendDecided(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, l *Ledger, scope events.Scope, customer, msgID string, decide func(a *Account) (string, any, error)) (uint64, error) {
	// One append per customer at a time from this process: concurrent commands for one
	// customer would otherwise all decide on the same state, all but one be refused by
	// JetStream, and retry in a crowd (a busy customer's reservations fell to ~660/s with a
	// p99 of 180 ms at 16 concurrent). Other processes still race, and lose, as before.
	defer l.appends.lock(accountKey{scope, customer})()
	subject := events.LedgerSubject(scope.Product, scope.Env, customer)
	deadline := time.Now().Add(10 * time.Second)
	fresh := false // whether the state was caught up with the subject's true last sequence
	for attempt := 0; time.Now().Before(deadline); attempt++ {
		backOff(attempt)
		var last uint64
		if fresh {
			var err error
			if last, err = catchUp(ctx, js, stream, subject, l); err != nil {
				return 0, err
			}
		}
		// Decided on the account in place, under the projection's read lock, and encoded
		// there too: a copy would cost as much as the account is big (a busy customer holds
		// hundreds of reservations), and every decide function only reads.
		var (
			typ, known         string
			lastSeq            uint64
			data               []byte
			refused, encodeErr error
		)
		l.View(scope, customer, func(a *Account, _ uint64) {
			lastSeq = a.LastSeq
			if msgID != "" && a.HasCommand(msgID) {
				known = msgID
				return
			}
			var v any
			if typ, v, refused = decide(a); refused == nil {
				data, encodeErr = encode(v)
			}
		})
		if !fresh {
			last = lastSeq
		}
		if known != "" || errors.Is(refused, ErrCarriedOut) {
			return lastSeq, nil // a retry of a command already written: its effect stands
		}
		if refused != nil {
			if !fresh {
				fresh = true // never refuse on a state that may be stale
				continue
			}
			return 0, refused
		}
		if encodeErr != nil {
			return 0, encodeErr
		}
		msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{typ}}}
		if msgID != "" {
			msg.Header.Set(events.HeaderCommand, msgID)
		}
		opts := []jetstream.PublishOpt{jetstream.WithExpectLastSequencePerSubject(last)}
		if msgID != "" {
			opts = append(opts, jetstream.WithMsgID(msgID))
		}
		ack, err := js.PublishMsg(ctx, msg, opts...)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			fresh = true // someone else appended first: decide again on the new state
			continue
		}
		if err != nil {
			return 0, err
		}
		if ack.Duplicate {
			// A retry of a command whose first attempt was written (its answer lost): the entry
			// at ack.Sequence is that attempt's, not data, so only the fold may apply it.
		} else if ok, err := l.ApplyOwn(ack.Sequence, last, scope, customer, typ, msgID, data); err != nil {
			return ack.Sequence, err
		} else if ok {
			return ack.Sequence, nil
		}
		if !l.WaitFor(ack.Sequence, time.Now().Add(5*time.Second)) {
			// Written, but this process cannot show it yet: the caller retries with the same
			// Idempotency-Key and is answered once the projection catches up.
			return ack.Sequence, ErrNotVisibleYet
		}
		return ack.Sequence, nil
	}
	return 0, errors.New("too much contention on this customer's ledger; retry")
}

// backOff sleeps a little, with jitter, before the attempt-th try of an append after lost
// races, so a crowd of writers does not retry in lockstep.
func backOff(attempt int) {
	if attempt > 1 {
		time.Sleep(time.Duration(mrand.IntN(1+min(attempt, 20))*100) * time.Microsecond)
	}
}

// catchUp reads subject's true last sequence and waits for the projection to reach it.
func catchUp(ctx context.Context, js jetstream.JetStream, stream jetstream.Stream, subject string, l *Ledger) (uint64, error) {
	last, err := LastSubjectSeq(ctx, js, stream.CachedInfo().Config.Name, subject)
	if err != nil {
		return 0, err
	}
	if !l.WaitFor(last, time.Now().Add(5*time.Second)) {
		return 0, errors.New("the projection is behind the ledger stream")
	}
	return last, nil
}

// LastSubjectSeq is the sequence of subject's last message in the stream (0 for none), asked
// of the stream's leader. The ledger stream allows direct gets, which nats.go uses for
// GetLastMsgForSubject when it can, and which any replica of a cluster may answer — one that
// lags may not have the entry just acknowledged (a reset, say), and a refusal decided on
// what it says would stand. The plain message get is answered by the leader only.
func LastSubjectSeq(ctx context.Context, js jetstream.JetStream, stream, subject string) (uint64, error) {
	req, err := json.Marshal(struct {
		LastFor string `json:"last_by_subj"`
	}{subject})
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	m, err := js.Conn().RequestWithContext(ctx, jsAPIPrefix(js)+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return 0, fmt.Errorf("reading the last entry of %s: %w", subject, err)
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Seq uint64 `json:"seq"`
		} `json:"message"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return 0, fmt.Errorf("reading the last entry of %s: %w", subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("reading the last entry of %s: %s (%d)", subject, resp.Error.Description, resp.Error.ErrCode)
	case resp.Message == nil:
		return 0, fmt.Errorf("reading the last entry of %s: an answer without a message", subject)
	}
	return resp.Message.Seq, nil
}

// jsAPIPrefix is the subject prefix of js's API requests.
func jsAPIPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return jetstream.DefaultAPIPrefix
}

// keyedLocks is a mutex per key, kept only while someone holds or waits for it.
type keyedLocks struct {
	mu sync.Mutex
	m  map[accountKey]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

// lock takes key's mutex and returns its release.
func (k *keyedLocks) lock(key accountKey) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[accountKey]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}

// encode is the JSON of an entry: by its own hand-written encoder when it has one (the entries
// written most, like quota.incremented.v1), else encoding/json.
func encode(v any) ([]byte, error) {
	if a, ok := v.(interface{ AppendJSON([]byte) ([]byte, error) }); ok {
		return a.AppendJSON(make([]byte, 0, 256))
	}
	return json.Marshal(v)
}
