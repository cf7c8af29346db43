package webhooks

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
	"github.com/allot-dev/allot/projector"
)

// ledgerFixture is a real JetStream with the webhook state and snapshot store, and a writer of
// ledger entries for customer "c" of acme/live that also folds them into snapshot (what the
// live projection would hold).
type ledgerFixture struct {
	js       jetstream.JetStream
	kv       jetstream.KeyValue
	snaps    jetstream.ObjectStore
	snapshot *projector.Ledger
	seq      uint64 // of the last entry written
}

var t0 = time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)

func newLedgerFixture(t *testing.T) *ledgerFixture {
	t.Helper()
	js := bustest.JetStream(t)
	kv, err := bus.EnsureWebhookState(context.Background(), js, bus.StreamOptions{})
	require.NoError(t, err)
	snaps, err := bus.EnsureSnapshotStore(context.Background(), js, bus.StreamOptions{})
	require.NoError(t, err)
	return &ledgerFixture{js: js, kv: kv, snaps: snaps, snapshot: projector.NewLedger()}
}

func (f *ledgerFixture) write(t *testing.T, typ string, v any) {
	t.Helper()
	subject := events.LedgerSubject("acme", "live", "c")
	b, err := json.Marshal(v)
	require.NoError(t, err)
	ack, err := f.js.PublishMsg(context.Background(), &nats.Msg{Subject: subject, Data: b, Header: nats.Header{events.HeaderType: []string{typ}}})
	require.NoError(t, err)
	f.seq = ack.Sequence
	require.NoError(t, f.snapshot.Apply(f.seq, subject, typ, b))
}

func (f *ledgerFixture) grant(t *testing.T, credits int64) {
	f.write(t, events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_1", Customer: "c", Amount: cr(credits), Source: "topup", Priority: 40, EffectiveAt: t0, At: t0})
}

func (f *ledgerFixture) debit(t *testing.T, usageSeq uint64, credits int64) {
	f.write(t, events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: usageSeq, LastSeq: usageSeq,
		Debits: []events.UsageDebited{{Customer: "c", UsageSeq: usageSeq, Amount: cr(credits), EventTime: t0.Add(time.Hour)}}})
}

// notes is what the outbox holds.
func (f *ledgerFixture) notes(t *testing.T) []events.Notification {
	t.Helper()
	ctx := context.Background()
	st, err := f.js.Stream(ctx, bus.OutboxStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	var out []events.Notification
	for s := info.State.FirstSeq; s <= info.State.LastSeq && info.State.Msgs > 0; s++ {
		m, err := st.GetMsg(ctx, s)
		require.NoError(t, err)
		var n events.Notification
		require.NoError(t, json.Unmarshal(m.Data, &n))
		out = append(out, n)
	}
	return out
}

func cr(c int64) events.Credits { return events.Credits(c * events.MicroPerCredit) }

// A restarted notifier starts its fold from the projection's snapshot (taken at or before its
// position) and still sees balances right: the depletion after the restart is notified once,
// with the balance a fold from the first entry gives, and nothing before the position again.
func TestNotifierRestartsFromTheSnapshot(t *testing.T) {
	f := newLedgerFixture(t)
	js, kv, snaps, ctx := f.js, f.kv, f.snaps, context.Background()
	f.grant(t, 10)
	f.debit(t, 1, 4) // 6 left

	run := func(upTo uint64) {
		t.Helper()
		rctx, cancel := context.WithCancel(ctx)
		n := &Notifier{JS: js, KV: kv, Endpoints: endpointList{}, LedgerStream: bus.LedgerStream, Snapshots: snaps, Log: slog.New(slog.DiscardHandler)}
		done := make(chan struct{})
		go func() { defer close(done); n.Run(rctx) }()
		require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= upTo }, 10*time.Second, 10*time.Millisecond)
		cancel()
		<-done
	}
	run(f.seq)
	require.Len(t, f.notes(t), 1, "credits.granted")

	// The projection saves a snapshot at the notifier's position; then more is written.
	b, err := json.Marshal(f.snapshot)
	require.NoError(t, err)
	_, err = snaps.PutBytes(ctx, projector.SnapshotName, b)
	require.NoError(t, err)
	f.debit(t, 2, 4) // 2 left
	f.debit(t, 3, 4) // -2: depleted
	run(f.seq)

	got := f.notes(t)
	require.Len(t, got, 2, "the grant once, then the depletion")
	assert.Equal(t, events.HookCreditsGranted, got[0].Type)
	assert.Equal(t, events.HookCreditsDepleted, got[1].Type)
	bal, _ := json.Marshal(got[1].Data["balance"])
	assert.Equal(t, `"-2"`, string(bal), "the balance a fold from the first entry gives")
}

// While no scope has a webhook endpoint the notifier reads nothing and only moves its
// position; once one exists it notifies from there, on balances folded from the first entry.
// It would fail if entries were notified while idle (the grant) or if the fold started empty
// at the position (the depletion's balance).
func TestNotifierIdlesWithoutEndpoints(t *testing.T) {
	f := newLedgerFixture(t)
	ctx := context.Background()
	var endpoints atomic.Bool
	n := &Notifier{JS: f.js, KV: f.kv, Endpoints: endpointList{}, LedgerStream: bus.LedgerStream, Snapshots: f.snaps, Log: slog.New(slog.DiscardHandler),
		AnyEndpoints: func(context.Context) (bool, error) { return endpoints.Load(), nil }}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(rctx) }()
	defer func() { cancel(); <-done }()

	f.grant(t, 10)
	f.debit(t, 1, 8) // 2 left
	require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= f.seq }, 10*time.Second, 10*time.Millisecond,
		"the idle notifier follows the ledger's end")
	assert.Zero(t, n.Written.Load(), "nothing is derived while no endpoint exists")

	endpoints.Store(true)
	time.Sleep(300 * time.Millisecond) // past the idle loop's next look
	f.debit(t, 2, 4)                   // -2: depleted
	require.Eventually(t, func() bool { return n.Written.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	got := f.notes(t)
	require.Len(t, got, 1)
	note := got[0]
	assert.Equal(t, events.HookCreditsDepleted, note.Type)
	bal, _ := json.Marshal(note.Data["balance"])
	assert.Equal(t, `"-2"`, string(bal), "the balance a fold from the first entry gives")
	time.Sleep(100 * time.Millisecond)
	assert.EqualValues(t, 1, n.Written.Load(), "the grant and the first debit, written while idle, are not notified")
}

// A block's expiry that takes the balance to nothing is notified as a depletion: the balance
// before it is the one just before expires_at (the entry comes after it, when balances already
// leave the block out, and "before" and "after" were both 0).
func TestExpiryDepletionIsNotified(t *testing.T) {
	f := newLedgerFixture(t)
	exp := t0.Add(time.Hour)
	f.write(t, events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_p", Customer: "c", Amount: cr(100), Source: "promo", Priority: 10, EffectiveAt: t0, ExpiresAt: &exp, At: t0})
	f.write(t, events.TypeCreditsExpired, events.CreditsExpired{Block: "blk_p", Customer: "c", Amount: cr(100), At: exp})
	types := f.notifyAll(t)
	assert.Contains(t, types, events.HookCreditsExpired)
	assert.Contains(t, types, events.HookCreditsDepleted, "%v", types)
}

// notifyAll runs a notifier over every entry written so far, stops it, and returns the types of
// the notifications in the outbox.
func (f *ledgerFixture) notifyAll(t *testing.T) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	n := &Notifier{JS: f.js, KV: f.kv, Endpoints: endpointList{}, LedgerStream: bus.LedgerStream, Snapshots: f.snaps, Log: slog.New(slog.DiscardHandler)}
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= f.seq }, 10*time.Second, 10*time.Millisecond)
	cancel()
	<-done
	var types []string
	for _, note := range f.notes(t) {
		types = append(types, note.Type)
	}
	return types
}

// A notifier restarted from the projection's snapshot sees the crossing of a block that expired
// since the customer's last entry, as one folding from the first entry does: 10 promo credits
// expire, then 5 of usage is priced (10 → −5 crossed zero). The balance that last entry left
// was kept only by a fold that had seen the entry.
func TestNotifierRestartedFromASnapshotSeesExpiryCrossings(t *testing.T) {
	for _, withSnapshot := range []bool{false, true} {
		t.Run(map[bool]string{false: "no_snapshot", true: "snapshot"}[withSnapshot], func(t *testing.T) {
			f := newLedgerFixture(t)
			ctx := context.Background()
			now := time.Now().UTC()
			exp := now.Add(1500 * time.Millisecond)
			f.write(t, events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_e", Customer: "c", Amount: cr(10), Source: "promo", Priority: 10,
				EffectiveAt: now.Add(-time.Hour), ExpiresAt: &exp, At: now})
			run := func(upTo uint64) {
				t.Helper()
				rctx, cancel := context.WithCancel(ctx)
				n := &Notifier{JS: f.js, KV: f.kv, Endpoints: endpointList{}, LedgerStream: bus.LedgerStream, Snapshots: f.snaps, Log: slog.New(slog.DiscardHandler)}
				done := make(chan struct{})
				go func() { defer close(done); n.Run(rctx) }()
				require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= upTo }, 10*time.Second, 10*time.Millisecond)
				cancel()
				<-done
			}
			run(f.seq) // credits.granted notified; the position is the grant
			if withSnapshot {
				b, err := json.Marshal(f.snapshot)
				require.NoError(t, err)
				_, err = f.snaps.PutBytes(ctx, projector.SnapshotName, b)
				require.NoError(t, err)
			}
			time.Sleep(time.Until(exp) + 200*time.Millisecond)
			at := time.Now().UTC() // priced after the block expired: overage 5
			f.write(t, events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: 1, LastSeq: 1,
				Debits: []events.UsageDebited{{Customer: "c", UsageSeq: 1, Amount: cr(5), EventTime: at}}})
			run(f.seq)
			var types []string
			for _, n := range f.notes(t) {
				types = append(types, n.Type)
			}
			assert.Contains(t, types, events.HookCreditsDepleted, "10 -> -5 crossed zero; got %v", types)
		})
	}
}
