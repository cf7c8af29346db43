package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// Many concurrent increments for one customer, through two batchers (two processes' worth)
// sharing one stream: exactly the limit is admitted, each request all or nothing, the
// batches really hold several requests, and a replay of the stream agrees.
// twoProcesses is two processes' worth of ledger writers on one JetStream: each with its own
// connection and projection following the ledger, made into a group committer by make.
func twoProcesses[C any](t *testing.T, ctx context.Context, make func(jetstream.JetStream, func(context.Context) (jetstream.Stream, error), *Ledger) C) []C {
	emb := bustest.Start(t)
	var out []C
	for i := 0; i < 2; i++ {
		js := bustest.Connect(t, emb)
		l := NewLedger()
		go Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
		out = append(out, make(js, func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, bus.LedgerStream) }, l))
	}
	return out
}

func TestIncrementsGroupCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batchers := twoProcesses(t, ctx, NewQuotaCommands)
	scope := events.Scope{Product: "acme", Env: "live"}
	hour := events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}
	calls := events.Quota{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(100), Period: hour}
	tokens := events.Quota{Key: "tokens", Meter: "requests", Limit: events.DecimalFromInt(1000), Period: hour}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)

	// 400 requests: each takes 1 call and 3 tokens, so "calls" is the binding limit (100).
	// Every tenth asks for 2000 tokens, more than the whole limit: refused as such, alone.
	const n = 400
	var mu sync.Mutex
	var admitted, exceeded, overLimit int
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			amt := events.DecimalFromInt(3)
			if i%10 == 0 {
				amt = events.DecimalFromInt(2000)
			}
			st, err := batchers[i%2].Increment(ctx, scope, "cust-1", "", []events.Quota{calls, tokens}, []events.Decimal{events.DecimalFromInt(1), amt}, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted++
				assert.True(t, st[0].Allowed && st[1].Allowed)
			case errors.Is(err, ErrWeightOverLimit):
				overLimit++
			case errors.Is(err, ErrQuotaExceeded):
				exceeded++
				var qe *QuotaError
				require.ErrorAs(t, err, &qe)
				assert.False(t, qe.Statuses[0].Allowed, "calls is the quota that refuses")
			default:
				t.Errorf("increment %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 100, admitted)
	assert.Equal(t, n/10, overLimit)
	assert.Equal(t, n-n/10-100, exceeded)

	// The stream: every admitted request's two items, in entries that mostly hold several.
	js := batchers[0].JS
	st, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	replayed := NewLedger()
	_, err = Rebuild(ctx, js, bus.LedgerStream, replayed, info.State.LastSeq, nil)
	require.NoError(t, err)
	a, ok := replayed.Account(scope, "cust-1")
	require.True(t, ok)
	sts := a.QuotaStatuses([]events.Quota{calls, tokens}, []events.Decimal{{}, {}}, now)
	assert.Equal(t, "100", sts[0].Used.String())
	assert.Equal(t, "300", sts[1].Used.String())
	lane := events.QuotaLaneSubject(scope.Product, scope.Env, events.QuotaLane("cust-1", 1))
	laneInfo, err := st.Info(ctx, jetstream.WithSubjectFilter(lane))
	require.NoError(t, err)
	entries := int64(laneInfo.State.Subjects[lane])
	assert.Less(t, entries, int64(100), "increments in flight together were written together")
	assert.Equal(t, int64(n), batchers[0].Requests.Load()+batchers[1].Requests.Load(), "every request decided once")
	assert.Equal(t, entries, batchers[0].Entries.Load()+batchers[1].Entries.Load(), "the counters see every entry")
	assert.Zero(t, a.Entries, "nothing was written on the customer's own subject")
	for _, b := range batchers {
		require.Eventually(t, func() bool { return b.Ledger.Seq() == info.State.LastSeq }, 5*time.Second, time.Millisecond)
		_, d1, err := b.Ledger.Digest()
		require.NoError(t, err)
		_, d2, err := replayed.Digest()
		require.NoError(t, err)
		assert.Equal(t, d2, d1, "each process's projection is the replay's")
	}
}

// A request whose context ends while it waits for its batch is not written.
func TestIncrementsCanceledRequestIsPassedOver(t *testing.T) {
	in := &QuotaCommands{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := &incRequest{waiter: newWaiter(ctx)}
	in.commit(events.Scope{}, 0, []*incRequest{req}) // no stream is touched: nothing is live
	<-req.done
	assert.ErrorIs(t, req.err, context.Canceled)
}

// The quota lane batches across customers: many customers' increments through two processes
// sharing one stream are each admitted exactly up to their own limit, in far fewer entries
// than requests, and both projections equal a replay of the stream.
func TestLaneGroupCommitAcrossCustomers(t *testing.T) {
	for _, lanes := range []int{1, 4} {
		t.Run(fmt.Sprint(lanes, " lanes"), func(t *testing.T) { laneGroupCommitAcrossCustomers(t, lanes) })
	}
}

func laneGroupCommitAcrossCustomers(t *testing.T, lanes int) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := twoProcesses(t, ctx, NewQuotaCommands)
	for _, w := range writers {
		w.Lanes = lanes
	}
	scope := events.Scope{Product: "acme", Env: "live"}
	calls := events.Quota{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(10), Period: events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	const customers, each = 40, 25
	var mu sync.Mutex
	admitted := map[string]int{}
	var wg sync.WaitGroup
	for i := 0; i < customers*each; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cust := fmt.Sprintf("cust-%d", i%customers)
			_, err := writers[i%2].Increment(ctx, scope, cust, "", []events.Quota{calls}, []events.Decimal{events.DecimalFromInt(1)}, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				admitted[cust]++
			case !errors.Is(err, ErrQuotaExceeded):
				t.Errorf("increment for %s: %v", cust, err)
			}
		}()
	}
	wg.Wait()
	require.Len(t, admitted, customers)
	for cust, n := range admitted {
		assert.Equal(t, 10, n, cust)
	}
	entries := writers[0].Entries.Load() + writers[1].Entries.Load()
	assert.Less(t, entries, int64(customers*10/2), "admitted increments of different customers were written together")
	st0, err := writers[0].JS.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	perLane, err := st0.Info(ctx, jetstream.WithSubjectFilter(events.LedgerPrefix+".acme.live.>"))
	require.NoError(t, err)
	assert.Len(t, perLane.State.Subjects, lanes, "the entries are on the lanes, and only there: %v", perLane.State.Subjects)

	st, err := writers[0].JS.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	replayed := NewLedger()
	_, err = Rebuild(ctx, writers[0].JS, bus.LedgerStream, replayed, info.State.LastSeq, nil)
	require.NoError(t, err)
	for i := 0; i < customers; i++ {
		a, ok := replayed.Account(scope, fmt.Sprintf("cust-%d", i))
		require.True(t, ok)
		assert.Equal(t, "10", a.QuotaStatuses([]events.Quota{calls}, []events.Decimal{{}}, now)[0].Used.String())
	}
	_, want, err := replayed.Digest()
	require.NoError(t, err)
	for _, w := range writers {
		require.Eventually(t, func() bool { return w.Ledger.Seq() == info.State.LastSeq }, 5*time.Second, time.Millisecond)
		_, got, err := w.Ledger.Digest()
		require.NoError(t, err)
		assert.Equal(t, want, got, "each process's projection is the replay's")
	}
}

// Resets and adjustments go through the lane in order with its increments, and a command
// carrying an id is carried out once however often it is retried, through either process.
func TestLaneCommandsInOrderAndOnce(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	writers := twoProcesses(t, ctx, NewQuotaCommands)
	scope := events.Scope{Product: "acme", Env: "live"}
	hour := events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}
	calls := events.Quota{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(3), Period: hour}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	one := []events.Decimal{events.DecimalFromInt(1)}
	used := func(w *QuotaCommands) string {
		a, _ := w.Ledger.Account(scope, "c1")
		return a.QuotaStatuses([]events.Quota{calls}, []events.Decimal{{}}, now)[0].Used.String()
	}

	for i := 0; i < 3; i++ {
		_, err := writers[i%2].Increment(ctx, scope, "c1", "", []events.Quota{calls}, one, now)
		require.NoError(t, err)
	}
	_, err := writers[0].Increment(ctx, scope, "c1", "", []events.Quota{calls}, one, now)
	require.ErrorIs(t, err, ErrQuotaExceeded)
	// A reset acknowledged by one process is seen by the next increment through the other.
	require.NoError(t, writers[0].Command(ctx, scope, "c1", "", func(*Account) (string, any, error) {
		return events.TypeQuotaReset, events.QuotaReset{Customer: "c1", Quota: "calls", Period: hour, At: now}, nil
	}))
	st, err := writers[1].Increment(ctx, scope, "c1", "", []events.Quota{calls}, one, now)
	require.NoError(t, err)
	assert.Equal(t, "1", st[0].Used.String())

	// One command id, tried through both processes: counted once.
	for i := 0; i < 4; i++ {
		st, err := writers[i%2].Increment(ctx, scope, "c1", "acme:live:cmd:x", []events.Quota{calls}, one, now)
		require.NoError(t, err)
		assert.Equal(t, "2", st[0].Used.String(), "attempt %d", i)
	}
	require.NoError(t, writers[1].Command(ctx, scope, "c1", "acme:live:cmd:y", func(*Account) (string, any, error) {
		return events.TypeQuotaAdjusted, events.QuotaAdjusted{Customer: "c1", Quota: "calls", Amount: events.DecimalFromInt(-1), Period: hour, At: now}, nil
	}))
	require.NoError(t, writers[0].Command(ctx, scope, "c1", "acme:live:cmd:y", func(*Account) (string, any, error) {
		return events.TypeQuotaAdjusted, events.QuotaAdjusted{Customer: "c1", Quota: "calls", Amount: events.DecimalFromInt(-1), Period: hour, At: now}, nil
	}))
	for _, w := range writers {
		require.Eventually(t, func() bool { return used(w) == "1" }, 5*time.Second, time.Millisecond)
	}
	a, _ := writers[0].Ledger.Account(scope, "c1")
	assert.Zero(t, a.LastSeq, "the customer's own subject is untouched")
}

// A process that starts from a snapshot taken after the lane's last entry knows where the lane
// is from the snapshot; one whose snapshot does not say (written before lanes were kept in
// snapshots) finds out from the stream. Either way its next increment is written.
func TestLaneWriterStartingFromASnapshot(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	emb := bustest.Start(t)
	js := bustest.Connect(t, emb)
	stream := func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, bus.LedgerStream) }
	scope := events.Scope{Product: "acme", Env: "live"}
	calls := events.Quota{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(10), Period: events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar}}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	one := []events.Decimal{events.DecimalFromInt(1)}

	first := NewLedger()
	go Follow(ctx, js, bus.LedgerStream, first, slog.New(slog.DiscardHandler))
	w := NewQuotaCommands(js, stream, first)
	for _, c := range []string{"c1", "c2"} {
		_, err := w.Increment(ctx, scope, c, "", []events.Quota{calls}, one, now)
		require.NoError(t, err)
	}
	snap, err := first.MarshalJSON()
	require.NoError(t, err)
	var old map[string]any
	require.NoError(t, json.Unmarshal(snap, &old))
	require.Contains(t, old, "lanes")
	delete(old, "lanes")
	oldSnap, err := json.Marshal(old)
	require.NoError(t, err)

	for i, b := range [][]byte{oldSnap, snap} { // the one without first: nothing has been written since it
		l := NewLedger()
		require.NoError(t, l.UnmarshalJSON(b))
		go Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
		ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		st, err := NewQuotaCommands(js, stream, l).Increment(ctx, scope, "c1", "", []events.Quota{calls}, one, now)
		cancel()
		require.NoError(t, err, "snapshot %d", i)
		assert.Equal(t, fmt.Sprint(2+i), st[0].Used.String(), "snapshot %d", i)
	}
}

// A batch decides each increment on the state the ones before it leave, whether its customer
// comes once or several times, interleaved with others; the accounts themselves are untouched.
func TestDecideLaneBatchOfSeveralCustomers(t *testing.T) {
	hour := events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}
	calls := []events.Quota{{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(3), Period: hour}}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	accounts := map[string]*Account{"a": newAccount("a"), "b": newAccount("b")}
	accounts["a"].applyIncrement(events.QuotaIncremented{Customer: "a", At: now, Items: []events.QuotaUse{{Quota: "calls", Amount: events.DecimalFromInt(1), Period: hour, At: now}}})
	account := func(c string) *Account {
		if a := accounts[c]; a != nil {
			return a
		}
		return newAccount(c)
	}
	// a has 2 left, b 3, c 3: a takes 1, b 2, a 1, c 3, a 1 (refused: none left), b 2 (refused).
	var reqs []*incRequest
	for _, r := range []struct {
		c string
		n int64
	}{{"a", 1}, {"b", 2}, {"a", 1}, {"c", 3}, {"a", 1}, {"b", 2}} {
		reqs = append(reqs, &incRequest{customer: r.c, quotas: calls, amounts: []events.Decimal{events.DecimalFromInt(r.n)}, now: now})
	}
	typ, _, data, _, err := decideLane(account, reqs)
	require.NoError(t, err)
	assert.Equal(t, events.TypeQuotaIncrements, typ)
	var admitted []string
	for i, r := range reqs {
		if r.err == nil {
			admitted = append(admitted, fmt.Sprintf("%d:%s used %s", i, r.customer, r.statuses[0].Used))
		} else {
			assert.ErrorIs(t, r.err, ErrQuotaExceeded, "request %d", i)
		}
	}
	assert.Equal(t, []string{"0:a used 2", "1:b used 2", "2:a used 3", "3:c used 3"}, admitted)
	e, err := events.DecodeQuotaIncrements(data)
	require.NoError(t, err)
	assert.Len(t, e.Increments, 4)
	assert.Equal(t, "1", accounts["a"].QuotaStatuses(calls, []events.Decimal{events.DecimalFromInt(1)}, now)[0].Used.String(), "deciding changes no account")
	assert.Equal(t, "0", accounts["b"].QuotaStatuses(calls, []events.Decimal{events.DecimalFromInt(1)}, now)[0].Used.String())
}

// A keyed increment retried on a process that lags behind a reset: the first decision refuses
// on the stale state, the fresh one finds the command written already, and the retry is
// answered as the command was (admitted), not with the stale refusal.
func TestKeyedIncrementRetriedAfterAStaleRefusal(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := bustest.JetStream(t)
	stream := func(ctx context.Context) (jetstream.Stream, error) { return js.Stream(ctx, bus.LedgerStream) }
	scope := events.Scope{Product: "acme", Env: "live"}
	hour := events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar}
	calls := events.Quota{Key: "calls", Meter: "requests", Limit: events.DecimalFromInt(1), Period: hour}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	subj := events.QuotaLaneSubject("acme", "live", 0)
	pub := func(typ, cmd string, v any) uint64 {
		b, _ := json.Marshal(v)
		m := &nats.Msg{Subject: subj, Data: b, Header: nats.Header{events.HeaderType: []string{typ}}}
		var opts []jetstream.PublishOpt
		if cmd != "" {
			m.Header.Set(events.HeaderCommand, cmd)
			opts = append(opts, jetstream.WithMsgID(cmd))
		}
		ack, err := js.PublishMsg(ctx, m, opts...)
		require.NoError(t, err)
		return ack.Sequence
	}
	use := []events.QuotaUse{{Quota: "calls", Amount: events.DecimalFromInt(1), Period: hour, At: now}}
	s1 := pub(events.TypeQuotaIncremented, "", events.QuotaIncremented{Customer: "c1", At: now, Items: use})
	pub(events.TypeQuotaReset, "", events.QuotaReset{Customer: "c1", Quota: "calls", Period: hour, At: now})
	const key = "acme:live:cmd:K"
	pub(events.TypeQuotaIncremented, key, events.QuotaIncremented{Customer: "c1", At: now, Items: use}) // the first attempt of K, admitted

	l := NewLedger()
	st, _ := js.Stream(ctx, bus.LedgerStream)
	m, err := st.GetMsg(ctx, s1)
	require.NoError(t, err)
	require.NoError(t, l.ApplyMsg(s1, m.Subject, m.Header, m.Data)) // lagging: used 1 of 1, the reset not folded
	go func() {
		time.Sleep(300 * time.Millisecond)
		Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
	}()
	statuses, err := NewQuotaCommands(js, stream, l).Increment(ctx, scope, "c1", key, []events.Quota{calls}, []events.Decimal{events.DecimalFromInt(1)}, now)
	a, _ := l.Account(scope, "c1")
	require.NoError(t, err, "K was admitted and written once; its retry must not be told 429")
	require.Len(t, statuses, 1)
	assert.True(t, statuses[0].Allowed)
	assert.Equal(t, "1", a.QuotaStatuses([]events.Quota{calls}, []events.Decimal{{}}, now)[0].Used.String(), "counted once, after the reset")
}

// A fresh read of a subject's last sequence asks the stream's leader, never a direct get:
// any replica answers those, and one that lags would hide an entry just acknowledged.
func TestCatchUpAsksTheLeader(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	stream, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	require.True(t, stream.CachedInfo().Config.AllowDirect, "the ledger allows direct gets (else this test proves nothing)")
	var mu sync.Mutex
	var asked []string
	for _, subj := range []string{"$JS.API.DIRECT.GET.>", "$JS.API.STREAM.MSG.GET.>"} {
		sub, err := js.Conn().Subscribe(subj, func(m *nats.Msg) {
			mu.Lock()
			defer mu.Unlock()
			asked = append(asked, m.Subject)
		})
		require.NoError(t, err)
		defer sub.Unsubscribe()
	}
	subject := events.QuotaLaneSubject("acme", "live", 0)
	l := NewLedger()
	last, err := catchUp(ctx, js, stream, subject, l)
	require.NoError(t, err)
	assert.Zero(t, last, "nothing on the lane yet")
	ack, err := js.Publish(ctx, subject, []byte(`{}`))
	require.NoError(t, err)
	_, err = js.Publish(ctx, events.LedgerSubject("acme", "live", "c1"), []byte(`{}`))
	require.NoError(t, err)
	go Follow(context.Background(), js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
	last, err = catchUp(ctx, js, stream, subject, l)
	require.NoError(t, err)
	assert.Equal(t, ack.Sequence, last)
	require.NoError(t, js.Conn().Flush())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"$JS.API.STREAM.MSG.GET." + bus.LedgerStream, "$JS.API.STREAM.MSG.GET." + bus.LedgerStream}, asked)
}
