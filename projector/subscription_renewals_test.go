package projector

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

// subEnv is a ledger following embedded JetStream, one customer c1 written to with
// AppendDecided, and an Expirer on a clock of the test's.
type subEnv struct {
	t     *testing.T
	ctx   context.Context
	l     *Ledger
	write func(typ string, decide func(*Account) (any, error))
	now   atomic.Pointer[time.Time]
	acct  func() *Account
	x     *Expirer
}

func newSubEnv(t *testing.T, t0 time.Time) *subEnv {
	js := bustest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	l := NewLedger()
	go Follow(ctx, js, bus.LedgerStream, l, slog.New(slog.DiscardHandler))
	scope := events.Scope{Product: "acme", Env: "live"}
	stream, err := js.Stream(ctx, bus.LedgerStream)
	require.NoError(t, err)
	e := &subEnv{t: t, ctx: ctx, l: l}
	e.now.Store(&t0)
	e.write = func(typ string, decide func(*Account) (any, error)) {
		t.Helper()
		_, err := AppendDecided(ctx, js, stream, l, scope, "c1", "", func(a *Account) (string, any, error) {
			v, err := decide(a)
			return typ, v, err
		})
		require.NoError(t, err)
	}
	e.acct = func() *Account {
		var c *Account
		l.View(scope, "c1", func(a *Account, _ uint64) { c = a.clone() })
		return c
	}
	e.x = &Expirer{JS: js, Ledger: l, Every: 10 * time.Millisecond, Grace: time.Minute, Now: func() time.Time { return *e.now.Load() }, Log: slog.New(slog.DiscardHandler)}
	return e
}

func (e *subEnv) set(t time.Time) { e.now.Store(&t) }

// Postpaid, the expirer down for two and a half cycles: when it comes back every missed cycle is
// advanced in turn, each granted once — DecideRenew jumped to the cycle holding now, so cycle 1
// was never granted (nor billed).
func TestPostpaidAfterDowntimeRenewsEveryCycle(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e := newSubEnv(t, t0)
	plan := events.Plan{Key: "pp", Credits: 100 * events.MicroPerCredit, Period: events.Period{Unit: events.UnitDay, Count: 1}, Mode: events.PlanPostpaid}
	e.write(events.TypeSubscriptionStarted, func(a *Account) (any, error) { return a.DecideSubscribe("sub_1", plan, t0, t0) })
	// usage in cycle 0 (40) and in cycle 1 (70), rated while the expirer was down
	e.write(events.TypeUsageRated, func(*Account) (any, error) {
		return events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{{Customer: "c1", Rule: "r", UsageSeq: 1, Amount: 40 * events.MicroPerCredit, EventTime: t0.Add(time.Hour)}}}, nil
	})
	e.write(events.TypeUsageRated, func(*Account) (any, error) {
		return events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{{Customer: "c1", Rule: "r", UsageSeq: 2, Amount: 70 * events.MicroPerCredit, EventTime: t0.Add(25 * time.Hour)}}}, nil
	})
	e.set(t0.Add(60 * time.Hour)) // cycle 2 holds now
	go e.x.Run(e.ctx)
	require.Eventually(t, func() bool { return e.acct().Subscriptions["sub_1"].Cycle >= 2 }, 5*time.Second, 10*time.Millisecond)
	time.Sleep(100 * time.Millisecond)
	a := e.acct()
	assert.Equal(t, int64(2), a.Subscriptions["sub_1"].Cycle, "no cycle past the one holding now")
	for k := int64(0); k <= 2; k++ {
		assert.NotNil(t, a.block(CycleBlock("sub_1", k, false)), "cycle %d's plan block", k)
	}
}

// Canceling a postpaid subscription writes its last usage summary: what was used since the last
// renewal, here a cycle that ended before the expirer renewed it (the expirer skips canceled
// subscriptions, and the cancel carried no usage, so that cycle was never billed).
func TestCancelingPostpaidWritesTheLastSummary(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	e := newSubEnv(t, t0)
	plan := events.Plan{Key: "pp", Credits: 100 * events.MicroPerCredit, Period: events.Period{Unit: events.UnitDay, Count: 1}, Mode: events.PlanPostpaid}
	e.write(events.TypeSubscriptionStarted, func(a *Account) (any, error) { return a.DecideSubscribe("sub_1", plan, t0, t0) })
	e.write(events.TypeUsageRated, func(*Account) (any, error) {
		return events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{{Customer: "c1", Rule: "r", UsageSeq: 1, Amount: 40 * events.MicroPerCredit, EventTime: t0.Add(time.Hour)}}}, nil
	})
	var canceled events.SubscriptionCanceled
	e.write(events.TypeSubscriptionCanceled, func(a *Account) (any, error) {
		c, err := a.DecideCancel("sub_1", t0.Add(24*time.Hour+time.Second))
		canceled = c
		return c, err
	})
	require.NotNil(t, canceled.Usage)
	assert.Equal(t, events.Credits(40*events.MicroPerCredit), *canceled.Usage)
	require.Eventually(t, func() bool { return e.acct().Subscriptions["sub_1"].Canceled != nil }, 5*time.Second, 10*time.Millisecond)
	if u := e.acct().Subscriptions["sub_1"].LastUsage; assert.NotNil(t, u) {
		assert.Equal(t, events.Credits(40*events.MicroPerCredit), *u)
	}
}
