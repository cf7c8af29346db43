package projector

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// Many concurrent holds for one customer, through two group committers (two processes' worth)
// sharing one stream: exactly what the balance covers is held, holds in flight together are
// written together, and a replay of the stream — which reads the batches — agrees.
func TestReservationsGroupCommit(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rs := twoProcesses(t, ctx, NewReservations)
	scope := events.Scope{Product: "acme", Env: "live"}
	now := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	st, err := rs[0].JS.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	_, err = AppendDecided(ctx, rs[0].JS, st, rs[0].Ledger, scope, "cust-1", "", func(a *Account) (string, any, error) {
		g, err := DecideGrant("cust-1", "blk_1", Grant{Amount: 100 * events.MicroPerCredit, Source: events.SourceWallet}, now)
		return events.TypeCreditsGranted, g, err
	})
	require.NoError(t, err)

	const n = 300 // 1 credit each against 100: exactly 100 held
	var mu sync.Mutex
	held, refused := 0, 0
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := rs[i%2].Reserve(ctx, scope, "cust-1", fmt.Sprint("res_", i), events.MicroPerCredit, time.Hour, now)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				held++
			case errors.Is(err, ErrInsufficientCredits):
				refused++
			default:
				t.Errorf("reserve %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 100, held)
	assert.Equal(t, n-100, refused)

	info, err := st.Info(ctx)
	require.NoError(t, err)
	replayed := NewLedger()
	_, err = Rebuild(ctx, rs[0].JS, bus.LedgerStream, replayed, info.State.LastSeq, nil)
	require.NoError(t, err)
	a, ok := replayed.Account(scope, "cust-1")
	require.True(t, ok)
	assert.Equal(t, events.Credits(100*events.MicroPerCredit), a.Reserved(now))
	assert.Equal(t, events.Credits(0), a.Effective(now))
	assert.Len(t, a.Reservations, 100)
	assert.Less(t, a.Entries, int64(1+100), "holds in flight together were written together")
	assert.Equal(t, int64(n), rs[0].Requests.Load()+rs[1].Requests.Load(), "every hold decided once")
	for _, r := range rs {
		require.Eventually(t, func() bool { return r.Ledger.Seq() == info.State.LastSeq }, 5*time.Second, time.Millisecond)
		_, d1, err := r.Ledger.Digest()
		require.NoError(t, err)
		_, d2, err := replayed.Digest()
		require.NoError(t, err)
		assert.Equal(t, d2, d1, "each process's projection is the replay's")
		id, ok := r.Ledger.ReservationCustomer(scope, "res_0")
		if held := a.Reservations["res_0"] != nil; held {
			assert.True(t, ok)
			assert.Equal(t, "cust-1", id, "a batched hold is found by its id")
		}
	}
}
