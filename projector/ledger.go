package projector

import (
	"encoding/json"

	"fmt"
	"github.com/nats-io/nats.go"
	"sync"
	"sync/atomic"
	"time"

	"github.com/allot-dev/allot/events"
)

// Applied describes what folding one item did, for the ledger API: the allocations a debit
// burned, and whether the item was skipped as already applied.
type Applied struct {
	Allocations []events.Allocation
	Sources     []string // the source of each allocation's block ("" for overage); set by Ledger.ApplyItems
	Skipped     bool
	Quota       bool // a rated entry's quota use (after its debits and unrated events)
}

// Apply folds one ledger entry of this customer. It is a pure function of the account and the
// entry: time comes from the entry. For usage.rated.v1 it returns one Applied per item (debits,
// then unrated events, then quota uses); otherwise one per item too (one, or a batch's).

// fold is Apply for readers that only keep the state (the live projection, replay): the
// rating items' results are not built, which is most of a rated entry's allocations. It
// returns how many rating items were applied (not skipped).
func (a *Account) fold(seq uint64, typ string, data []byte, scratch *ratedFold, applied func(AppliedRated)) (int, error) {
	if typ != events.TypeUsageRated {
		_, err := a.Apply(seq, typ, data)
		return 0, err
	}
	a.LastSeq = seq
	a.Entries++
	r := scratch
	if err := decodeRatedFoldInto(r, data); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range r.Debits {
		if ok, _ := a.applyDebit(d.UsageSeq, d.RuleIndex, d.Rule, d.Amount, d.EventTime, false); ok {
			n++
			if applied != nil {
				applied(AppliedRated{UsageSeq: d.UsageSeq, Rule: uint64(d.Rule), Amount: d.Amount, At: d.EventTime})
			}
		}
	}
	for _, u := range r.Unrated {
		if a.applyUnrated(events.UsageUnrated{UsageSeq: u.UsageSeq}) {
			n++
			if applied != nil {
				applied(AppliedRated{UsageSeq: u.UsageSeq, Unrated: true})
			}
		}
	}
	for _, q := range r.Quotas {
		if a.applyQuotaUse(q) && applied != nil {
			applied(AppliedRated{UsageSeq: q.UsageSeq, Quota: q.Quota, Use: q.Amount, Period: q.Period, At: q.At})
		}
	}
	return n, nil
}

func (a *Account) Apply(seq uint64, typ string, data []byte) ([]Applied, error) {
	a.LastSeq = seq
	a.Entries++
	switch typ {
	case events.TypeUsageRated:
		r, err := decodeRatedFold(data)
		if err != nil {
			return nil, err
		}
		out := make([]Applied, 0, len(r.Debits)+len(r.Unrated))
		for _, d := range r.Debits {
			ok, allocs := a.applyDebit(d.UsageSeq, d.RuleIndex, d.Rule, d.Amount, d.EventTime, true)
			out = append(out, Applied{Allocations: allocs, Skipped: !ok})
		}
		for _, u := range r.Unrated {
			out = append(out, Applied{Skipped: !a.applyUnrated(events.UsageUnrated{UsageSeq: u.UsageSeq})})
		}
		for _, q := range r.Quotas {
			out = append(out, Applied{Quota: true, Skipped: !a.applyQuotaUse(q)})
		}
		return out, nil
	case events.TypeQuotaIncremented:
		e, err := events.DecodeQuotaIncremented(data)
		if err != nil {
			return nil, err
		}
		a.applyIncrement(e)
		return []Applied{{}}, nil
	case events.TypeQuotaReset:
		var e events.QuotaReset
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		a.applyReset(e)
		return []Applied{{}}, nil
	case events.TypeQuotaAdjusted:
		var e events.QuotaAdjusted
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		a.applyAdjusted(e)
		return []Applied{{}}, nil
	case events.TypeCreditsGranted:
		var g events.CreditsGranted
		if err := json.Unmarshal(data, &g); err != nil {
			return nil, err
		}
		if a.block(g.Block) != nil {
			return []Applied{{Skipped: true}}, nil // a retried grant: the block exists
		}
		b := &Block{ID: g.Block, Source: g.Source, Priority: g.Priority, EffectiveAt: g.EffectiveAt.UTC(), ExpiresAt: g.ExpiresAt,
			CostBasis: g.CostBasis, CreatedAt: g.At.UTC(), Granted: g.Amount, Remaining: g.Amount}
		a.addBlock(b)
		return []Applied{{}}, nil
	case events.TypeCreditsExpired:
		var e events.CreditsExpired
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		b := a.block(e.Block)
		if b == nil || b.Expired {
			return []Applied{{Skipped: true}}, nil
		}
		a.Expired += b.Remaining
		b.Lapsed, b.Remaining, b.Expired = b.Remaining, 0, true
		return []Applied{{}}, nil
	case events.TypeReservationCreated:
		e, err := events.DecodeReservationCreated(data)
		if err != nil {
			return nil, err
		}
		return []Applied{{Skipped: !a.applyReservationCreated(e)}}, nil
	case events.TypeReservationsCreated:
		e, err := events.DecodeReservationsCreated(data)
		if err != nil {
			return nil, err
		}
		out := make([]Applied, len(e.Reservations))
		for i, r := range e.Reservations {
			out[i].Skipped = !a.applyReservationCreated(r)
		}
		return out, nil
	case events.TypeReservationCommitted:
		var e events.ReservationCommitted
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		r := a.Reservations[e.Reservation]
		if r == nil || r.Status != StatusActive {
			return []Applied{{Skipped: true}}, nil
		}
		at := e.At.UTC()
		r.Status, r.Committed, r.EndedAt = StatusCommitted, e.Amount, &at
		a.holdEnded(r)
		a.Committed = addCredits(a.Committed, e.Amount)
		var allocs []events.Allocation
		if e.Amount > 0 {
			allocs = a.applyAllocations(at, e.Amount, e.Allocations)
		}
		return []Applied{{Allocations: allocs}}, nil
	case events.TypeReservationReleased, events.TypeReservationExpired:
		var e events.ReservationReleased
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, err
		}
		r := a.Reservations[e.Reservation]
		if r == nil || r.Status != StatusActive {
			return []Applied{{Skipped: true}}, nil
		}
		at := e.At.UTC()
		r.Status, r.EndedAt = StatusReleased, &at
		a.holdEnded(r)
		if typ == events.TypeReservationExpired {
			r.Status = StatusExpired
		}
		return []Applied{{}}, nil
	case events.TypeSubscriptionStarted, events.TypeSubscriptionRenewed, events.TypeSubscriptionCanceled:
		ok, err := a.applySubscription(typ, data)
		if err != nil {
			return nil, err
		}
		return []Applied{{Skipped: !ok}}, nil
	}
	// A newer allot may write entry types this one does not know: they count as entries and
	// change nothing else, so an older reader keeps serving what it understands.
	return []Applied{{Skipped: true}}, nil
}

func (a *Account) applyIncrement(e events.QuotaIncremented) {
	for _, it := range e.Items {
		it.UsageSeq = 0 // explicit increments are applied as they come, once each
		a.applyQuotaUse(it)
	}
}

func (a *Account) applyReset(e events.QuotaReset) {
	if w := a.quotaWindowAt(e.Quota, e.Period, e.At, false); w != nil {
		w.Used = events.Decimal{}
	}
}

// applyAdjusted: adding use counts as use (and anchors a first_use period); taking some away
// only changes a window that exists, and used never goes below zero.
func (a *Account) applyAdjusted(e events.QuotaAdjusted) {
	if w := a.quotaWindowAt(e.Quota, e.Period, e.At, e.Amount.Sign() > 0); w != nil {
		w.Used = w.Used.Add(e.Amount)
		if w.Used.Sign() < 0 {
			w.Used = events.Decimal{}
		}
		if e.Amount.Sign() < 0 && e.Period.Mode == events.ModeFirstUse {
			a.Quotas[e.Quota].unanchorIfUnused()
		}
	}
}

// applyReservationCreated starts a hold, unless it exists already (a retry written twice).
func (a *Account) applyReservationCreated(e events.ReservationCreated) bool {
	if _, ok := a.Reservations[e.Reservation]; ok {
		return false
	}
	if a.Reservations == nil {
		a.Reservations = map[string]*Reservation{}
	}
	r := &Reservation{ID: e.Reservation, Amount: e.Amount, ExpiresAt: e.ExpiresAt.UTC(), CreatedAt: e.At.UTC(), Status: StatusActive}
	a.Reservations[e.Reservation] = r
	a.holdStarted(r)
	return true
}

// debitApplied reports whether the debit of this rule for the event at usageSeq was applied
// already (events.DebitCharged).
func (a *Account) debitApplied(usageSeq uint64, ruleIndex int, rule ruleKey) bool {
	return events.DebitCharged(a.UsageSeq, a.UsageIndex, a.UsageRules, usageSeq, ruleIndex, uint64(rule))
}

// applyDebit folds one debit (or credit-back) item and reports whether it was applied; a copy
// written by a re-rate after a crash is skipped. With record, it also returns the allocations
// a debit burned.
func (a *Account) applyDebit(usageSeq uint64, ruleIndex int, rule ruleKey, amount events.Credits, eventTime time.Time, record bool) (bool, []events.Allocation) {
	if a.debitApplied(usageSeq, ruleIndex, rule) {
		return false, nil
	}
	if usageSeq != a.UsageSeq {
		a.UsageRules, a.UsageIndex = a.UsageRules[:0], ruleIndex // clone() copies it
	}
	if rule != 0 {
		a.UsageRules = append(a.UsageRules, uint64(rule))
	}
	a.UsageSeq, a.UsageIndex = usageSeq, max(a.UsageIndex, ruleIndex)
	var allocs []events.Allocation
	switch {
	case amount > 0:
		a.Debited = addCredits(a.Debited, amount)
		allocs = a.allocate(eventTime.UTC(), amount, record)
	case amount < 0:
		a.CreditedBack -= amount
		a.refund(eventTime.UTC(), -amount)
	}
	return true, allocs
}

func (a *Account) applyUnrated(u events.UsageUnrated) bool {
	if u.UsageSeq <= a.UnratedSeq {
		return false
	}
	a.UnratedSeq = u.UsageSeq
	a.Unrated++
	return true
}

type accountKey struct {
	Scope    events.Scope
	Customer string
}

// AppliedRated is an item of a usage.rated.v1 entry that the fold applied (the first of its
// usage position) — a debit, an unrated event or a quota use — as replay's audit of rating
// compares it with the usage stream rated again.
type AppliedRated struct {
	Scope    events.Scope
	Customer string
	UsageSeq uint64
	Unrated  bool           // an unrated event: nothing else is set
	Quota    string         // a quota use's quota; empty for a debit
	Rule     uint64         // a debit's rule key, as RuleKeyHash
	Amount   events.Credits // a debit's amount
	Use      events.Decimal // a quota use's amount
	Period   events.Period  // a quota use's period
	At       time.Time      // a debit's event time, a quota use's time
}

// RuleKeyHash is the hash the fold keeps a debit's rule key as.
func RuleKeyHash(key string) uint64 { return uint64(hashRuleKey([]byte(key))) }

// OnRated makes the fold call f with every debit, unrated event and quota use it applies from a
// usage.rated.v1 entry, in stream order (nil: none). For `allot replay`'s audit of rating: set
// it before folding.
func (l *Ledger) OnRated(f func(AppliedRated)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.onRated = f
}

// Ledger is the fold of the ledger stream: every customer's account.
type Ledger struct {
	onRated  func(AppliedRated)
	mu       sync.RWMutex
	seq      uint64
	items    int64 // rating items (debits and unrated events) applied
	accounts map[accountKey]*Account
	resv     map[events.Scope]map[string]string // reservation and subscription id → customer
	forgot   map[events.Scope]map[uint64]string // holdKey of a forgotten reservation → customer (Account.Forgotten)
	byID     map[string]string                  // allot customer UUID → external id (UUIDs are scope-specific)
	changed  chan struct{}
	waiting  atomic.Bool // someone holds changed: only then is it closed and replaced
	// ahead is the highest sequence applied out of stream order by ApplyOwn (0 when none is
	// ahead of seq); settling counts readers that need a state covering exactly seq, and
	// while it is not zero ApplyOwn declines.
	ahead    uint64
	settling int
	// lanes is the last sequence folded of each quota lane (key: scope and lane token): where
	// the lane's next append expects the subject to be.
	lanes   map[accountKey]uint64
	scratch ratedFold  // the decode buffer of the fold, used under mu
	appends keyedLocks // one AppendDecided per customer at a time
	// snapGen counts snapshots taken: accounts of an earlier generation may be being encoded,
	// and are copied before the fold changes them (Account.gen).
	snapGen    atomic.Uint64
	dueIdx     dueIndex // when accounts next have something due (due.go), under mu
	trackDue   bool     // whether dueIdx is kept (an Expirer reads it)
	dueScratch []dueAt  // what the entry being applied made due (Account.noteDue)
}

// NewLedger returns an empty fold.
func NewLedger() *Ledger {
	return &Ledger{accounts: map[accountKey]*Account{}, lanes: map[accountKey]uint64{}, forgot: map[events.Scope]map[uint64]string{}, resv: map[events.Scope]map[string]string{}, byID: map[string]string{}, changed: make(chan struct{})}
}

// Seq is the last ledger sequence applied.
func (l *Ledger) Seq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.seq
}

// Items is how many rating items (debits, credit-backs, unrated events) have been applied.
func (l *Ledger) Items() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.items
}

// Apply folds the ledger entry at seq, published on subject with type typ. Sequences at or
// below the last applied are ignored.
func (l *Ledger) Apply(seq uint64, subject, typ string, data []byte) error {
	_, err := l.applyEntry(seq, subject, typ, "", data, false)
	return err
}

// ApplyMsg folds a ledger message as it comes from the stream (type and command from its
// headers). Every fold that is compared with another (the live projection, replay) uses it.
func (l *Ledger) ApplyMsg(seq uint64, subject string, h nats.Header, data []byte) error {
	_, err := l.applyEntry(seq, subject, h.Get(events.HeaderType), h.Get(events.HeaderCommand), data, false)
	return err
}

// ApplyItems is Apply that also says what each item did (the allocations a debit burned), for
// readers that record them (the ClickHouse sink).
func (l *Ledger) ApplyItems(seq uint64, subject, typ string, data []byte) ([]Applied, error) {
	return l.ApplyCommand(seq, subject, typ, "", data)
}

// ApplyCommand is ApplyItems for an entry that carried out the API command cmd: the account
// remembers its recent commands, so a retry of one that was already written is recognised.
func (l *Ledger) ApplyCommand(seq uint64, subject, typ, cmd string, data []byte) ([]Applied, error) {
	return l.applyEntry(seq, subject, typ, cmd, data, true)
}

// applyEntry folds the entry at seq; with results it says what each item did.
func (l *Ledger) applyEntry(seq uint64, subject, typ, cmd string, data []byte, results bool) ([]Applied, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.applyEntryLocked(seq, subject, typ, cmd, data, results)
}

func (l *Ledger) applyEntryLocked(seq uint64, subject, typ, cmd string, data []byte, results bool) ([]Applied, error) {
	if seq <= l.seq {
		return nil, nil
	}
	l.seq = seq
	defer l.wake()
	addr, err := events.ParseLedgerSubject(subject)
	if err != nil {
		return nil, err
	}
	if addr.Lane != "" {
		return l.applyLaneLocked(seq, events.Scope{Product: addr.Product, Env: addr.Env}, addr.Lane, typ, cmd, data)
	}
	k := accountKey{events.Scope{Product: addr.Product, Env: addr.Env}, addr.Customer}
	a := l.accounts[k]
	if a != nil && seq <= a.LastSeq {
		return nil, nil // applied already, ahead of the fold, by ApplyOwn
	}
	return l.applyLocked(seq, k, a, typ, cmd, data, results)
}

// ApplyOwn folds an entry this process has just appended, without waiting for the stream to
// deliver it: JetStream acknowledged it at seq with prev as the subject's previous sequence
// (an append with an expected last subject sequence), so when the account's last entry is prev
// the entry is exactly what the fold will meet next for this customer. The fold skips it then.
// It reports whether the entry is in the projection (applied now, or by the fold already);
// false means the caller must wait for the fold.
func (l *Ledger) ApplyOwn(seq, prev uint64, scope events.Scope, customer, typ, cmd string, data []byte) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= l.seq {
		return true, nil
	}
	if l.settling > 0 {
		return false, nil
	}
	k := accountKey{scope, customer}
	a := l.accounts[k]
	last := uint64(0)
	if a != nil {
		last = a.LastSeq
	}
	if last >= seq {
		return true, nil
	}
	if last != prev {
		return false, nil // the fold has not reached this customer's previous entry yet
	}
	if _, err := l.applyLocked(seq, k, a, typ, cmd, data, false); err != nil {
		return false, err
	}
	l.ahead = max(l.ahead, seq)
	return true, nil
}

// writableLocked is the account k, created if new, that the fold may change: an account a
// snapshot may be encoding is replaced by a copy first.
func (l *Ledger) writableLocked(k accountKey) *Account {
	return l.writableFrom(k, l.accounts[k])
}

// writableFrom is writableLocked for a caller that has looked the account up (a: nil if none).
func (l *Ledger) writableFrom(k accountKey, a *Account) *Account {
	switch gen := l.snapGen.Load(); {
	case a == nil:
		a = newAccount(k.Customer)
		a.gen = gen
		l.accounts[k] = a
		l.byID[events.CustomerID(k.Scope, k.Customer)] = k.Customer
	case a.gen < gen: // a snapshot may be encoding this account: change a copy
		a = a.clone()
		a.gen = gen
		l.accounts[k] = a
	}
	return a
}

// applyLaneLocked folds an entry of a quota lane: each item names its customer. It changes
// only quota windows (and remembers the command), never an account's position on its own
// subject (LastSeq), which is what that subject's appends expect. It says one Applied per
// customer command.
func (l *Ledger) applyLaneLocked(seq uint64, scope events.Scope, lane, typ, cmd string, data []byte) ([]Applied, error) {
	l.lanes[accountKey{scope, lane}] = seq
	account := func(customer string) *Account {
		a := l.writableLocked(accountKey{scope, customer})
		if cmd != "" {
			a.rememberQuotaCommand(cmd)
		}
		return a
	}
	switch typ {
	case events.TypeQuotaIncrements:
		e, err := events.DecodeQuotaIncrements(data)
		if err != nil {
			return nil, fmt.Errorf("ledger %d: %w", seq, err)
		}
		out := make([]Applied, len(e.Increments))
		for _, inc := range e.Increments {
			account(inc.Customer).applyIncrement(inc)
		}
		return out, nil
	case events.TypeQuotaIncremented:
		e, err := events.DecodeQuotaIncremented(data)
		if err != nil {
			return nil, fmt.Errorf("ledger %d: %w", seq, err)
		}
		account(e.Customer).applyIncrement(e)
	case events.TypeQuotaReset:
		var e events.QuotaReset
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("ledger %d: %w", seq, err)
		}
		account(e.Customer).applyReset(e)
	case events.TypeQuotaAdjusted:
		var e events.QuotaAdjusted
		if err := json.Unmarshal(data, &e); err != nil {
			return nil, fmt.Errorf("ledger %d: %w", seq, err)
		}
		account(e.Customer).applyAdjusted(e)
	default:
		// A newer allot's lane entry: passed over, as Account.Apply passes over unknown types.
		return []Applied{{Skipped: true}}, nil
	}
	return []Applied{{}}, nil
}

// viewLane calls f under the projection's read lock with the accounts of scope (account gives
// them in place, or a new empty one for a customer not seen yet: f must only read them, not
// keep them) and the last sequence folded of the quota lane.
func (l *Ledger) viewLane(scope events.Scope, lane int, f func(account func(customer string) *Account, laneSeq uint64)) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	f(func(customer string) *Account {
		if a := l.accounts[accountKey{scope, customer}]; a != nil {
			return a
		}
		return newAccount(customer)
	}, l.lanes[accountKey{scope, events.QuotaLaneToken(lane)}])
}

// applyInOrder folds an entry this process has just appended at seq when it is the very next
// entry of the stream for the projection (and nothing was applied ahead), which is exactly
// what the fold would do; it reports whether the entry is in the projection. Otherwise the
// caller waits for the fold. Lane entries change many accounts, so unlike ApplyOwn this never
// applies one out of the stream's order.
func (l *Ledger) applyInOrder(seq uint64, subject, typ, cmd string, data []byte) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= l.seq {
		return true, nil
	}
	if seq != l.seq+1 || l.ahead > l.seq {
		return false, nil
	}
	_, err := l.applyEntryLocked(seq, subject, typ, cmd, data, false)
	return err == nil, err
}

// applyLocked folds one entry into the account k; current is l.accounts[k], which the caller
// has looked up already (nil for a new customer).
func (l *Ledger) applyLocked(seq uint64, k accountKey, current *Account, typ, cmd string, data []byte, results bool) ([]Applied, error) {
	a := l.writableFrom(k, current)
	l.collectDueLocked(a)
	if !results && typ == events.TypeUsageRated {
		var applied func(AppliedRated)
		if l.onRated != nil {
			applied = func(it AppliedRated) {
				it.Scope, it.Customer = k.Scope, k.Customer
				l.onRated(it)
			}
		}
		n, err := a.fold(seq, typ, data, &l.scratch, applied) // a credit-back may refill an expiring block
		l.indexDueLocked(k, a)
		if err != nil {
			return nil, fmt.Errorf("ledger %d: %w", seq, err)
		}
		l.items += int64(n)
		if cmd != "" {
			a.rememberCommand(cmd)
		}
		return nil, nil
	}
	applied, err := a.Apply(seq, typ, data)
	l.indexDueLocked(k, a)
	if err != nil {
		return nil, fmt.Errorf("ledger %d: %w", seq, err)
	}
	if cmd != "" {
		a.rememberCommand(cmd)
		if (typ == events.TypeReservationCommitted || typ == events.TypeReservationReleased) && len(applied) == 1 && !applied[0].Skipped {
			var e struct {
				Reservation string `json:"reservation"`
			}
			if json.Unmarshal(data, &e) == nil {
				if r := a.Reservations[e.Reservation]; r != nil {
					r.EndedBy = fnv1a(cmd)
				}
			}
		}
	}
	if typ == events.TypeReservationCreated || typ == events.TypeReservationsCreated || typ == events.TypeSubscriptionStarted {
		var ids []string
		switch typ {
		case events.TypeReservationCreated:
			if r, err := events.DecodeReservationCreated(data); err == nil {
				ids = append(ids, r.Reservation)
			}
		case events.TypeReservationsCreated:
			if e, err := events.DecodeReservationsCreated(data); err == nil {
				for _, r := range e.Reservations {
					ids = append(ids, r.Reservation)
				}
			}
		default:
			var e struct {
				Subscription string `json:"subscription"`
			}
			if json.Unmarshal(data, &e) == nil {
				ids = append(ids, e.Subscription)
			}
		}
		if len(ids) > 0 && l.resv[k.Scope] == nil {
			l.resv[k.Scope] = map[string]string{}
		}
		for _, id := range ids {
			l.resv[k.Scope][id] = k.Customer
		}
		if len(a.Reservations) > maxReservations {
			gone, dropped := a.forgetEndedReservations(keptEndedReservations)
			for _, id := range gone {
				delete(l.resv[k.Scope], id)
			}
			l.noteForgottenLocked(k, gone, dropped)
		}
	}
	if typ == events.TypeUsageRated {
		for _, ap := range applied {
			if !ap.Skipped && !ap.Quota {
				l.items++
			}
		}
	}
	for i := range applied {
		for _, al := range applied[i].Allocations {
			src := ""
			if b := a.block(al.Block); b != nil {
				src = b.Source
			}
			applied[i].Sources = append(applied[i].Sources, src)
		}
	}
	return applied, nil
}

// settled runs f under the read lock once the fold has caught up with every entry ApplyOwn
// applied ahead of it, so f sees the state of exactly l.seq (what a replay to l.seq
// rebuilds). ApplyOwn declines meanwhile, so a steady stream of commands cannot starve it.
// It reports false, without calling f, if the fold does not catch up by the deadline.
func (l *Ledger) settled(deadline time.Time, f func()) bool {
	l.mu.Lock()
	l.settling++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.settling--
		l.mu.Unlock()
	}()
	for {
		l.mu.RLock()
		if l.seq >= l.ahead {
			f()
			l.mu.RUnlock()
			return true
		}
		ch := l.changedLocked()
		l.mu.RUnlock()
		if !waitChanged(ch, deadline) {
			return false
		}
	}
}

// waitChanged waits for ch, a fold's wake-up, until deadline; false if the deadline came first.
func waitChanged(ch <-chan struct{}, deadline time.Time) bool {
	wait := time.Until(deadline)
	if wait <= 0 {
		return false
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// wake wakes whoever waits for the fold (under the write lock). Most entries have no one
// waiting, and then the channel is kept rather than closed and made again.
func (l *Ledger) wake() {
	if l.waiting.Swap(false) {
		close(l.changed)
		l.changed = make(chan struct{})
	}
}

// changedLocked returns the channel wake closes (under the read lock).
func (l *Ledger) changedLocked() <-chan struct{} {
	l.waiting.Store(true)
	return l.changed
}

// waitLane blocks until the projection has folded an entry of the quota lane past seq, or the
// deadline passes.
func (l *Ledger) waitLane(scope events.Scope, lane int, seq uint64, deadline time.Time) bool {
	k := accountKey{scope, events.QuotaLaneToken(lane)}
	return l.waitUntil(func() bool { return l.lanes[k] > seq }, deadline)
}

// WaitFor blocks until sequence seq has been applied or the deadline passes.
func (l *Ledger) WaitFor(seq uint64, deadline time.Time) bool {
	return l.waitUntil(func() bool { return l.seq >= seq }, deadline)
}

// waitUntil blocks until done, called under the read lock, holds or the deadline passes.
func (l *Ledger) waitUntil(done func() bool, deadline time.Time) bool {
	for {
		l.mu.RLock()
		ok := done()
		var ch <-chan struct{}
		if !ok {
			ch = l.changedLocked()
		}
		l.mu.RUnlock()
		if ok {
			return true
		}
		if !waitChanged(ch, deadline) {
			return false
		}
	}
}

// Account returns a copy of one customer's account (a new, empty one when allot has not seen
// the customer: unknown customers exist on first use).
func (l *Ledger) Account(scope events.Scope, customer string) (*Account, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.accounts[accountKey{scope, customer}]
	if !ok {
		return newAccount(customer), false
	}
	return a.clone(), true
}

// View calls f with the customer's account in place and the sequence the projection covers,
// under the read lock (an empty account when allot has not seen the customer): for reads on
// the hot path — checks, balances — that would otherwise copy the account. f must not keep or
// change the account, nor call back into the ledger.
func (l *Ledger) View(scope events.Scope, customer string, f func(a *Account, seq uint64)) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.accounts[accountKey{scope, customer}]
	if !ok {
		a = newAccount(customer)
	}
	f(a, l.seq)
}

// ReservationCustomer returns the customer holding a reservation (or a subscription), or
// having held a reservation it has since forgotten.
func (l *Ledger) ReservationCustomer(scope events.Scope, id string) (string, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if c, ok := l.resv[scope][id]; ok {
		return c, ok
	}
	c, ok := l.forgot[scope][holdKey(id)]
	return c, ok
}

// noteForgottenLocked indexes the reservations account k has just forgotten, and lets go of
// the records it dropped.
func (l *Ledger) noteForgottenLocked(k accountKey, gone []string, dropped []ForgottenHold) {
	m := l.forgot[k.Scope]
	if m == nil {
		m = map[uint64]string{}
		l.forgot[k.Scope] = m
	}
	for _, id := range gone {
		m[holdKey(id)] = k.Customer
	}
	for _, f := range dropped {
		if m[f.Key] == k.Customer {
			delete(m, f.Key)
		}
	}
}

// ResolveCustomer maps allot's UUID for a customer this projection knows to its external id;
// anything else is taken as an external id already (producers may use UUIDs of their own).
func (l *Ledger) ResolveCustomer(scope events.Scope, id string) string {
	if !events.LooksLikeCustomerID(id) {
		return id
	}
	l.mu.RLock()
	ext, ok := l.byID[id]
	l.mu.RUnlock()
	if ok && events.CustomerID(scope, ext) == id {
		return ext
	}
	return id
}

// Known reports whether the ledger holds an account for the customer.
func (l *Ledger) Known(scope events.Scope, customer string) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	_, ok := l.accounts[accountKey{scope, customer}]
	return ok
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// BalanceAt is a customer's balance at t, read in place (no copy of the account).
func (l *Ledger) BalanceAt(scope events.Scope, customer string, t time.Time) events.Credits {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.accounts[accountKey{scope, customer}]
	if !ok {
		return 0
	}
	return a.Balance(t)
}
