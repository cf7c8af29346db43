package projector

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// DefaultExpiryGrace is Expirer.Grace in allot serve.
const DefaultExpiryGrace = time.Minute

// Expirer writes the ledger entries that time alone causes: credits.expired.v1 when a block
// with credits left passes its expires_at, reservation.expired.v1 when a hold passes its TTL.
// Balances already leave such blocks and holds out from the moment they expire; the entries
// make it part of the record (and of replay and webhooks). Every process may run one: the
// entries carry derived message ids and the fold applies each at most once.
type Expirer struct {
	JS     jetstream.JetStream
	Ledger *Ledger
	Every  time.Duration // default 1s
	// Grace is how long after a block's expires_at its expiry entry is written: usage from
	// before the expiry that rating is still pricing burns the block first instead of becoming
	// overage behind the entry. Balances leave the block out from expires_at all the same.
	Grace    time.Duration
	Now      func() time.Time
	Log      *slog.Logger
	Expiries atomic.Int64
	stream   jetstream.Stream
}

type expiry struct {
	key              accountKey
	subject, typ, id string
	v                any
}

// Run scans until ctx ends.
func (x *Expirer) Run(ctx context.Context) error {
	every := x.Every
	if every <= 0 {
		every = time.Second
	}
	now := x.Now
	if now == nil {
		now = time.Now
	}
	x.Ledger.TrackDue()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		at := now().UTC()
		exps, renews := x.due(at)
		for i, e := range exps {
			data, _ := json.Marshal(e.v)
			msg := &nats.Msg{Subject: e.subject, Data: data, Header: nats.Header{events.HeaderType: []string{e.typ}}}
			if _, err := x.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(e.id)); err != nil {
				if ctx.Err() == nil {
					x.Log.Warn("writing expiry", "subject", e.subject, "err", err)
				}
				for _, rest := range exps[i:] { // taken from the index: due again next time
					x.Ledger.remindDue(rest.key, at)
				}
				break
			}
			x.Expiries.Add(1)
		}
		x.renewPostpaid(ctx, at, renews)
	}
}

// due takes from the ledger's expiry index the accounts with something due and returns the
// entries to write for them and the postpaid subscriptions to renew.
func (x *Expirer) due(now time.Time) ([]expiry, []renewal) {
	var out []expiry
	var renews []renewal
	for _, k := range x.Ledger.takeDue(now, x.Grace) {
		sc := k.Scope
		x.Ledger.View(sc, k.Customer, func(a *Account, _ uint64) {
			for id, sub := range a.Subscriptions {
				// Renewed at the cycle's end, not a grace after it as blocks expire: the next
				// cycle's block must exist when its first usage is priced, or that usage is
				// overage (usage of the ended cycle priced late lands in the next: see README).
				if sub.Plan.Mode == events.PlanPostpaid && sub.Canceled == nil && !now.Before(sub.CycleEnd) {
					renews = append(renews, renewal{k, id})
				}
			}
			subject := events.LedgerSubject(sc.Product, sc.Env, a.Customer)
			for _, b := range a.Blocks {
				if !b.Expired && b.Remaining > 0 && b.ExpiresAt != nil && !now.Before(b.ExpiresAt.Add(x.Grace)) {
					out = append(out, expiry{k, subject, events.TypeCreditsExpired, sc.Product + ":" + sc.Env + ":exp:" + b.ID,
						events.CreditsExpired{Block: b.ID, Customer: a.Customer, Amount: b.Remaining, At: *b.ExpiresAt}})
				}
			}
			if a.firstExpiry.IsZero() || now.Before(a.firstExpiry) {
				return // no active hold has expired
			}
			for _, r := range a.Reservations {
				if r.Status == StatusActive && !now.Before(r.ExpiresAt) {
					out = append(out, expiry{k, subject, events.TypeReservationExpired, sc.Product + ":" + sc.Env + ":rexp:" + r.ID,
						events.ReservationReleased{Reservation: r.ID, Customer: a.Customer, At: r.ExpiresAt}})
				}
			}
		})
	}
	return out, renews
}

// renewal is a postpaid subscription whose cycle has ended.
type renewal struct {
	key accountKey
	sub string
}

// renewPostpaid advances each postpaid subscription whose cycle has ended, with the usage
// summary of the cycle that ended. Decided like any command: with several processes, each
// cycle is still renewed once.
func (x *Expirer) renewPostpaid(ctx context.Context, now time.Time, ts []renewal) {
	if len(ts) == 0 {
		return
	}
	if x.stream == nil {
		s, err := x.JS.Stream(ctx, bus.LedgerStream)
		if err != nil {
			x.Log.Warn("renewing postpaid subscriptions", "err", err)
			for _, t := range ts {
				x.Ledger.remindDue(t.key, now)
			}
			return
		}
		x.stream = s
	}
	for _, t := range ts {
		_, err := AppendDecided(ctx, x.JS, x.stream, x.Ledger, t.key.Scope, t.key.Customer, "", func(a *Account) (string, any, error) {
			e, err := a.DecideRenew(t.sub, now, true)
			return events.TypeSubscriptionRenewed, e, err
		})
		if err != nil && !errors.Is(err, ErrAlreadyRenewed) && !errors.Is(err, ErrSubscriptionCanceled) && !errors.Is(err, ErrSubscriptionEnds) && ctx.Err() == nil {
			x.Log.Warn("renewing a postpaid subscription", "subscription", t.sub, "err", err)
			x.Ledger.remindDue(t.key, now) // due again next time
		}
	}
}
