package webhooks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// Endpoints gives a scope's webhook endpoints.
type Endpoints interface {
	WebhookEndpoints(scope events.Scope) []events.WebhookEndpoint
}

// Notifier derives webhook notifications from the ledger and writes them to the outbox.
type Notifier struct {
	JS           jetstream.JetStream
	KV           jetstream.KeyValue // keeps "notifier.seq": the ledger sequence notified up to
	Endpoints    Endpoints
	LedgerStream string
	// Snapshots, when set, is where the ledger projection keeps its snapshot: a restart starts
	// its fold there when the snapshot is not past the position (else from the first entry).
	Snapshots jetstream.ObjectStore
	// AnyEndpoints, when set, reports whether any scope has a webhook endpoint, as of the
	// config stream's end when it is called. While none has, the notifier does not read the
	// ledger at all (see idle).
	AnyEndpoints func(context.Context) (bool, error)
	Log          *slog.Logger
	Written      atomic.Int64
}

const notifierKey = "notifier.seq"

// Run notifies until ctx ends, restarting from its saved position after any failure.
func (n *Notifier) Run(ctx context.Context) error {
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		err := n.run(ctx)
		if ctx.Err() != nil {
			return nil
		}
		n.Log.Warn("webhook notifier restarting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

func (n *Notifier) position(ctx context.Context) (uint64, error) {
	e, err := n.KV.Get(ctx, notifierKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.ParseUint(string(e.Value()), 10, 64)
}

func (n *Notifier) run(ctx context.Context) error {
	pos, err := n.position(ctx)
	if err != nil {
		return err
	}
	if busy, err := n.idle(ctx, &pos); err != nil || !busy {
		return err
	}
	// Crossings (low, depleted) depend on balances, so the notifier folds the ledger: silently
	// up to its position (from the projection's snapshot when it can), then notifying.
	fold, from, err := projector.FoldFrom(ctx, n.Snapshots, pos)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := n.JS.OrderedConsumer(ctx, n.LedgerStream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(1024))
	if err != nil {
		return err
	}
	defer it.Stop()
	var pending []jetstream.PubAckFuture
	var last uint64
	lastBalance := map[string]events.Credits{} // by scope and customer: the balance after its last entry
	// leftBy is the balance the customer's last entry before this run's first left, when the
	// fold began at the projection's snapshot: that entry was folded into the snapshot, not
	// here, so lastBalance does not have it (a notifier restarted from a snapshot missed a
	// crossing by a block that expired since, which one folding from the first entry saw). The
	// account has not changed since that entry, so its balance at that entry's time is it.
	leftBy := func(scope events.Scope, customer string) (events.Credits, bool) {
		if from <= 1 {
			return 0, false
		}
		var lastSeq uint64
		fold.View(scope, customer, func(a *projector.Account, _ uint64) { lastSeq = a.LastSeq })
		if lastSeq == 0 || lastSeq >= from {
			return 0, false
		}
		s, err := n.JS.Stream(ctx, n.LedgerStream)
		if err != nil {
			return 0, false
		}
		raw, err := s.GetMsg(ctx, lastSeq)
		if err != nil {
			return 0, false
		}
		return fold.BalanceAt(scope, customer, raw.Time.UTC()), true
	}
	flush := func() error {
		if err := waitAcks(ctx, pending); err != nil {
			return err
		}
		pending = pending[:0]
		if last > pos {
			if _, err := n.KV.Put(ctx, notifierKey, []byte(strconv.FormatUint(last, 10))); err != nil {
				return err
			}
			pos = last
		}
		return nil
	}
	for ctx.Err() == nil {
		m, err := it.Next(jetstream.NextMaxWait(250 * time.Millisecond))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				if err := flush(); err != nil {
					return err
				}
				continue
			}
			return err
		}
		md, err := m.Metadata()
		if err != nil {
			continue
		}
		seq := md.Sequence.Stream
		typ := m.Headers().Get(events.HeaderType)
		switch typ {
		case events.TypeQuotaIncremented, events.TypeQuotaIncrements, events.TypeQuotaReset, events.TypeQuotaAdjusted:
			// Quota entries move no balance and no notification derives from them (the API
			// writes quota.exceeded when it refuses), so this fold, which exists for balances,
			// passes them over: under an enforced quota they are most of the ledger.
			if seq > pos {
				last = seq
			}
			continue
		}
		addr, err := events.ParseLedgerSubject(m.Subject())
		if err != nil {
			continue
		}
		scope := events.Scope{Product: addr.Product, Env: addr.Env}
		at := md.Timestamp.UTC()
		before := at
		if typ == events.TypeCreditsExpired {
			// Written after expires_at, when balances already leave the block out: the balance
			// before it is the one just before the block expired.
			var e events.CreditsExpired
			if json.Unmarshal(m.Data(), &e) == nil && !e.At.IsZero() {
				before = e.At.Add(-time.Nanosecond)
			}
		}
		balBefore := fold.BalanceAt(scope, addr.Customer, before)
		key := scope.String() + "\x00" + addr.Customer
		b, ok := lastBalance[key]
		if !ok {
			b, ok = leftBy(scope, addr.Customer)
		}
		if ok && b > balBefore {
			// The balance the last entry left, when it was higher: a drop between entries
			// crossed too. A block expires at its expires_at, a minute before its expiry
			// entry; usage priced in that minute saw the block gone already (before 0), and
			// the expiry entry saw that usage's overage (before 0): 10 → −10 notified nothing.
			balBefore = b
		}
		if err := fold.Apply(seq, m.Subject(), typ, m.Data()); err != nil {
			n.Log.Warn("unreadable ledger entry", "seq", seq, "err", err)
			continue
		}
		balAfter := fold.BalanceAt(scope, addr.Customer, at)
		lastBalance[key] = balAfter
		if seq <= pos {
			continue
		}
		notes := n.derive(scope, addr.Customer, typ, m.Data(), balBefore, balAfter, at)
		nth := map[string]int{}
		for _, note := range notes {
			// Named by what it is, not by its place in the list: the list holds a credits.low
			// per endpoint with a threshold, so an endpoint added before a re-fold (after a
			// crash between publishing and saving the position) moved the others, and the
			// re-fold delivered them again under new ids.
			kind := note.Type + "\x00" + note.Endpoint
			note.ID = "msg_" + shortID(scope.Product, scope.Env, strconv.FormatUint(seq, 10), kind, strconv.Itoa(nth[kind]))
			nth[kind]++
			f, err := publish(n.JS, scope, note)
			if err != nil {
				return err
			}
			pending = append(pending, f)
			n.Written.Add(1)
		}
		last = seq
		if len(pending) >= 512 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// idle holds the notifier while no scope has a webhook endpoint: nothing derived then could
// ever be delivered, and deriving means a second fold of the whole ledger (every debit batch,
// every quota increment) for nobody. Its position follows the ledger's end instead, read
// before each look at the endpoints, which is taken on a catalog caught up with the config
// stream: an entry is passed over only if no endpoint existed once it was written. When one
// appears, the normal path starts from that position, folding silently up to it (from the
// projection's snapshot when it can), so balances and crossings are right from there on. It
// reports whether to go on notifying (false when ctx ended).
func (n *Notifier) idle(ctx context.Context, pos *uint64) (bool, error) {
	if n.AnyEndpoints == nil {
		return true, nil
	}
	s, err := n.JS.Stream(ctx, n.LedgerStream)
	if err != nil {
		return false, err
	}
	for ctx.Err() == nil {
		info, err := s.Info(ctx)
		if err != nil {
			return false, err
		}
		has, err := n.AnyEndpoints(ctx)
		if err != nil {
			return false, err
		}
		if has {
			return true, nil
		}
		if last := info.State.LastSeq; last > *pos {
			if _, err := n.KV.Put(ctx, notifierKey, []byte(strconv.FormatUint(last, 10))); err != nil {
				return false, err
			}
			*pos = last
		}
		select {
		case <-time.After(250 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return false, nil
}

// derive maps one ledger entry to the notifications it causes.
// cycleGrants notifies the blocks a subscription cycle grants (its plan block and any
// rollover) as credits.granted, like any other grant.
func cycleGrants(note func(string, map[string]any), c events.Cycle, balance events.Credits) {
	end := c.End
	if c.Amount > 0 {
		note(events.HookCreditsGranted, map[string]any{"block": c.Block, "amount": c.Amount, "source": events.SourcePlan, "expires_at": &end, "balance": balance})
	}
	if c.Rollover > 0 {
		note(events.HookCreditsGranted, map[string]any{"block": c.RollBlock, "amount": c.Rollover, "source": events.SourceRollover, "expires_at": &end, "balance": balance})
	}
}

func (n *Notifier) derive(scope events.Scope, customer, typ string, data []byte, before, after events.Credits, at time.Time) []events.Notification {
	var out []events.Notification
	note := func(t string, d map[string]any) {
		out = append(out, events.Notification{Type: t, Customer: customer, Data: d, At: at})
	}
	switch typ {
	case events.TypeCreditsGranted:
		var g events.CreditsGranted
		if json.Unmarshal(data, &g) == nil {
			note(events.HookCreditsGranted, map[string]any{"block": g.Block, "amount": g.Amount, "source": g.Source, "expires_at": g.ExpiresAt, "balance": after})
		}
	case events.TypeCreditsExpired:
		var e events.CreditsExpired
		if json.Unmarshal(data, &e) == nil {
			note(events.HookCreditsExpired, map[string]any{"block": e.Block, "amount": e.Amount, "balance": after})
		}
	case events.TypeReservationExpired:
		var e events.ReservationReleased
		if json.Unmarshal(data, &e) == nil {
			note(events.HookReservationExpired, map[string]any{"reservation": e.Reservation})
		}
	case events.TypeSubscriptionStarted:
		var e events.SubscriptionStarted
		if json.Unmarshal(data, &e) == nil {
			cycleGrants(note, e.Grant, after)
		}
	case events.TypeSubscriptionRenewed:
		var e events.SubscriptionRenewed
		if json.Unmarshal(data, &e) == nil {
			d := map[string]any{"subscription": e.Subscription, "cycle": e.Grant.Index, "cycle_start": e.Grant.Start, "cycle_end": e.Grant.End,
				"credits": e.Grant.Amount, "rollover": e.Grant.Rollover}
			if e.Usage != nil {
				d["usage"] = *e.Usage // postpaid: what the cycle that ended used
			}
			note(events.HookSubscriptionRenewed, d)
			cycleGrants(note, e.Grant, after)
		}
	case events.TypeSubscriptionCanceled:
		var e events.SubscriptionCanceled
		if json.Unmarshal(data, &e) == nil {
			d := map[string]any{"subscription": e.Subscription}
			if e.Usage != nil {
				d["usage"] = *e.Usage // postpaid: what was used since the last renewal
			}
			note(events.HookSubscriptionCanceled, d)
		}
	}
	// Crossings: credits.low per endpoint threshold (re-armed once the balance is back above
	// it), credits.depleted at zero.
	for _, ep := range n.Endpoints.WebhookEndpoints(scope) {
		if ep.LowBalanceThreshold == nil || !subscribed(ep, events.HookCreditsLow) {
			continue
		}
		if thr := *ep.LowBalanceThreshold; before > thr && after <= thr {
			out = append(out, events.Notification{Type: events.HookCreditsLow, Customer: customer, At: at, Endpoint: ep.ID,
				Data: map[string]any{"balance": after, "threshold": thr}})
		}
	}
	if before > 0 && after <= 0 {
		note(events.HookCreditsDepleted, map[string]any{"balance": after})
	}
	return out
}

func subscribed(ep events.WebhookEndpoint, typ string) bool {
	for _, t := range ep.Events {
		if t == typ || t == "*" {
			return true
		}
	}
	return false
}

// publish writes a notification to the customer's outbox subject, deduplicated by its id.
func publish(js jetstream.JetStream, scope events.Scope, note events.Notification) (jetstream.PubAckFuture, error) {
	b, err := json.Marshal(note)
	if err != nil {
		return nil, err
	}
	msg := &nats.Msg{Subject: events.OutboxSubject(scope.Product, scope.Env, note.Customer), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeNotification}}}
	return js.PublishMsgAsync(msg, jetstream.WithMsgID(scope.Product+":"+scope.Env+":"+note.ID), jetstream.WithStallWait(30*time.Second))
}

// Publish writes one notification now (quota.exceeded comes from a refused increment, not from
// the ledger). Its id decides deduplication: one per quota window, say.
func Publish(ctx context.Context, js jetstream.JetStream, scope events.Scope, note events.Notification) error {
	f, err := publish(js, scope, note)
	if err != nil {
		return err
	}
	return waitAcks(ctx, []jetstream.PubAckFuture{f})
}

func waitAcks(ctx context.Context, fs []jetstream.PubAckFuture) error {
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
			return errors.New("timed out waiting for outbox acknowledgements")
		}
	}
	return nil
}

func shortID(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
