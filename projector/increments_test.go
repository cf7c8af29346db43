package projector

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

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
	batchers := twoProcesses(t, ctx, NewIncrements)
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
			st, err := batchers[i%2].Increment(ctx, scope, "cust-1", []events.Quota{calls, tokens}, []events.Decimal{events.DecimalFromInt(1), amt}, now)
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
	assert.Less(t, a.Entries, int64(100), "increments in flight together were written together")
	assert.Equal(t, int64(n), batchers[0].Requests.Load()+batchers[1].Requests.Load(), "every request decided once")
	assert.Equal(t, a.Entries, batchers[0].Entries.Load()+batchers[1].Entries.Load(), "the counters see every entry")
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
	in := &Increments{}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := &incRequest{waiter: newWaiter(ctx)}
	in.commit(accountKey{}, []*incRequest{req}) // no stream is touched: nothing is live
	<-req.done
	assert.ErrorIs(t, req.err, context.Canceled)
}
