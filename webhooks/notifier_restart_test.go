package webhooks

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
	"github.com/allot-dev/allot/projector"
)

// A restarted notifier starts its fold from the projection's snapshot (taken at or before its
// position) and still sees balances right: the depletion after the restart is notified once,
// with the balance a fold from the first entry gives, and nothing before the position again.
func TestNotifierRestartsFromTheSnapshot(t *testing.T) {
	js := bustest.JetStream(t)
	ctx := context.Background()
	kv, err := bus.EnsureWebhookState(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	snaps, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)

	subject := events.LedgerSubject("acme", "live", "c")
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	snapshot := projector.NewLedger() // what the live projection would hold
	seq := uint64(0)
	write := func(typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{events.HeaderType: []string{typ}}})
		require.NoError(t, err)
		seq = ack.Sequence
		require.NoError(t, snapshot.Apply(seq, subject, typ, b))
	}
	debit := func(usageSeq uint64, amount events.Credits) events.UsageRated {
		return events.UsageRated{Customer: "c", FirstSeq: usageSeq, LastSeq: usageSeq,
			Debits: []events.UsageDebited{{Customer: "c", UsageSeq: usageSeq, Amount: amount, EventTime: t0.Add(time.Hour)}}}
	}
	cr := func(c int64) events.Credits { return events.Credits(c * events.MicroPerCredit) }
	write(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_1", Customer: "c", Amount: cr(10), Source: "topup", Priority: 40, EffectiveAt: t0, At: t0})
	write(events.TypeUsageRated, debit(1, cr(4))) // 6 left

	notes := func() []events.Notification {
		t.Helper()
		st, err := js.Stream(ctx, bus.OutboxStream)
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
	run(seq)
	require.Len(t, notes(), 1, "credits.granted")

	// The projection saves a snapshot at the notifier's position; then more is written.
	b, err := json.Marshal(snapshot)
	require.NoError(t, err)
	_, err = snaps.PutBytes(ctx, projector.SnapshotName, b)
	require.NoError(t, err)
	write(events.TypeUsageRated, debit(2, cr(4))) // 2 left
	write(events.TypeUsageRated, debit(3, cr(4))) // -2: depleted
	run(seq)

	got := notes()
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
	js := bustest.JetStream(t)
	ctx := context.Background()
	kv, err := bus.EnsureWebhookState(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	snaps, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	subject := events.LedgerSubject("acme", "live", "c")
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	seq := uint64(0)
	write := func(typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{events.HeaderType: []string{typ}}})
		require.NoError(t, err)
		seq = ack.Sequence
	}
	cr := func(c int64) events.Credits { return events.Credits(c * events.MicroPerCredit) }
	debit := func(usageSeq uint64, amount events.Credits) events.UsageRated {
		return events.UsageRated{Customer: "c", FirstSeq: usageSeq, LastSeq: usageSeq,
			Debits: []events.UsageDebited{{Customer: "c", UsageSeq: usageSeq, Amount: amount, EventTime: t0.Add(time.Hour)}}}
	}
	var endpoints atomic.Bool
	n := &Notifier{JS: js, KV: kv, Endpoints: endpointList{}, LedgerStream: bus.LedgerStream, Snapshots: snaps, Log: slog.New(slog.DiscardHandler),
		AnyEndpoints: func(context.Context) (bool, error) { return endpoints.Load(), nil }}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); n.Run(rctx) }()
	defer func() { cancel(); <-done }()

	write(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_1", Customer: "c", Amount: cr(10), Source: "topup", Priority: 40, EffectiveAt: t0, At: t0})
	write(events.TypeUsageRated, debit(1, cr(8))) // 2 left
	require.Eventually(t, func() bool { p, err := n.position(ctx); return err == nil && p >= seq }, 10*time.Second, 10*time.Millisecond,
		"the idle notifier follows the ledger's end")
	assert.Zero(t, n.Written.Load(), "nothing is derived while no endpoint exists")

	endpoints.Store(true)
	time.Sleep(300 * time.Millisecond)            // past the idle loop's next look
	write(events.TypeUsageRated, debit(2, cr(4))) // -2: depleted
	require.Eventually(t, func() bool { return n.Written.Load() == 1 }, 10*time.Second, 10*time.Millisecond)
	st, err := js.Stream(ctx, bus.OutboxStream)
	require.NoError(t, err)
	info, err := st.Info(ctx)
	require.NoError(t, err)
	m, err := st.GetMsg(ctx, info.State.LastSeq)
	require.NoError(t, err)
	var note events.Notification
	require.NoError(t, json.Unmarshal(m.Data, &note))
	assert.Equal(t, events.HookCreditsDepleted, note.Type)
	bal, _ := json.Marshal(note.Data["balance"])
	assert.Equal(t, `"-2"`, string(bal), "the balance a fold from the first entry gives")
	time.Sleep(100 * time.Millisecond)
	assert.EqualValues(t, 1, n.Written.Load(), "the grant and the first debit, written while idle, are not notified")
}
