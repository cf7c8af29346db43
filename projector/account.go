package projector

import (
	"cmp"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/allot-dev/allot/events"
)

// Block is a credit block as folded from the ledger.
type Block struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Priority    int             `json:"priority"`
	EffectiveAt time.Time       `json:"effective_at"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
	CostBasis   *events.Decimal `json:"cost_basis,omitempty"`
	CreatedAt   time.Time       `json:"created_at"`
	Granted     events.Credits  `json:"granted"`
	Remaining   events.Credits  `json:"remaining"`
	Expired     bool            `json:"expired,omitempty"`
	Lapsed      events.Credits  `json:"lapsed,omitempty"` // what was left when it expired (a plan's rollover reads it)
}

// eligible reports whether the block can be burned by a debit at t.
func (b *Block) eligible(t time.Time) bool {
	return !b.Expired && b.Remaining > 0 && !b.EffectiveAt.After(t) && (b.ExpiresAt == nil || t.Before(*b.ExpiresAt))
}

// BurnOrder is the total order blocks are burned in (DESIGN.md, Burn order): priority
// ascending; then expires_at ascending, never-expiring last; then cost basis ascending, free
// (none) first; then effective_at, created_at and block id.
func BurnOrder(a, b *Block) int {
	if c := cmp.Compare(a.Priority, b.Priority); c != 0 {
		return c
	}
	switch {
	case a.ExpiresAt == nil && b.ExpiresAt != nil:
		return 1
	case a.ExpiresAt != nil && b.ExpiresAt == nil:
		return -1
	case a.ExpiresAt != nil:
		if c := a.ExpiresAt.Compare(*b.ExpiresAt); c != 0 {
			return c
		}
	}
	ca, cb := events.Decimal{}, events.Decimal{}
	if a.CostBasis != nil {
		ca = *a.CostBasis
	}
	if b.CostBasis != nil {
		cb = *b.CostBasis
	}
	if c := ca.Cmp(cb); c != 0 {
		return c
	}
	if c := a.EffectiveAt.Compare(b.EffectiveAt); c != 0 {
		return c
	}
	if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

// Reservation statuses.
const (
	StatusActive    = "active"
	StatusCommitted = "committed"
	StatusReleased  = "released"
	StatusExpired   = "expired"
)

// Reservation is a hold on credits.
type Reservation struct {
	ID        string         `json:"id"`
	Amount    events.Credits `json:"amount"`
	ExpiresAt time.Time      `json:"expires_at"`
	CreatedAt time.Time      `json:"created_at"`
	Status    string         `json:"status"`
	Committed events.Credits `json:"committed,omitempty"`
	EndedAt   *time.Time     `json:"ended_at,omitempty"`
	// EndedBy is the FNV-1a hash of the command id (Idempotency-Key) of the commit or release
	// that ended it, if it had one: a retry of it is recognised for as long as the hold is kept.
	EndedBy uint64 `json:"ended_by,omitempty"`
}

// An account remembers every active reservation, and the most recent ended ones so that
// GET shows their outcome. Without a bound, a customer making reservations all day would grow
// without end, and every decision on it (which copies the account) with it. Ended ones it
// forgets leave a 16-byte record (ForgottenHold), so a late commit or release still gets 409
// (expired, or already ended) rather than 404 for the last maxForgotten of them: a busy
// customer's client committing just after a hold's TTL passed must hear that it expired.
const (
	maxReservations       = 512  // ended ones are forgotten when an account holds more than this
	keptEndedReservations = 256  // the most recently ended, kept when forgetting
	maxForgotten          = 8192 // records of forgotten ones kept, the most recent
)

// ForgottenHold is what an account keeps of an ended reservation it forgot: a hash of its id
// (holdKey) and whether it ended by expiring.
type ForgottenHold struct {
	Key     uint64 `json:"key"`
	Expired bool   `json:"expired,omitempty"`
}

// holdKey is a reservation id's 64-bit FNV-1a hash (never 0).
func holdKey(id string) uint64 { return fnv1a(id) }

// forgottenHold reports how the forgotten reservation id ended, if the account remembers it.
func (a *Account) forgottenHold(id string) (expired, ok bool) {
	k := holdKey(id)
	for i := len(a.Forgotten) - 1; i >= 0; i-- {
		if a.Forgotten[i].Key == k {
			return a.Forgotten[i].Expired, true
		}
	}
	return false, false
}

// forgetEndedReservations drops ended reservations, oldest end first, down to keep of them,
// records each in Forgotten, and returns their ids and the oldest records it let go of to stay
// within maxForgotten. It depends only on the account, so every fold forgets the same.
func (a *Account) forgetEndedReservations(keep int) (gone []string, dropped []ForgottenHold) {
	if a.ended <= keep {
		return nil, nil
	}
	var ended []*Reservation
	for _, r := range a.Reservations {
		if r.Status != StatusActive {
			ended = append(ended, r)
		}
	}
	if len(ended) <= keep {
		return nil, nil
	}
	slices.SortFunc(ended, func(x, y *Reservation) int {
		if c := endedAt(x).Compare(endedAt(y)); c != 0 {
			return c
		}
		return strings.Compare(x.ID, y.ID)
	})
	for _, r := range ended[:len(ended)-keep] {
		delete(a.Reservations, r.ID)
		gone = append(gone, r.ID)
		a.Forgotten = append(a.Forgotten, ForgottenHold{Key: holdKey(r.ID), Expired: r.Status == StatusExpired})
	}
	if n := len(a.Forgotten) - maxForgotten; n > 0 {
		dropped = slices.Clone(a.Forgotten[:n])
		a.Forgotten = slices.Delete(a.Forgotten, 0, n)
	}
	a.ended -= len(gone)
	return gone, dropped
}

func endedAt(r *Reservation) time.Time {
	if r.EndedAt != nil {
		return *r.EndedAt
	}
	return r.CreatedAt
}

// StatusAt is the reservation's status at t: an active hold past its TTL is expired even
// before the expiry entry is written.
func (r *Reservation) StatusAt(t time.Time) string {
	if r.Status == StatusActive && !t.Before(r.ExpiresAt) {
		return StatusExpired
	}
	return r.Status
}

// Account is one customer's folded ledger.
type Account struct {
	Customer      string                   `json:"customer"`
	Blocks        []*Block                 `json:"blocks"`  // in burn order
	Overage       events.Credits           `json:"overage"` // debits no block covered
	Credit        events.Credits           `json:"credit"`  // credit-backs no block could take back
	Reservations  map[string]*Reservation  `json:"reservations,omitempty"`
	Forgotten     []ForgottenHold          `json:"forgotten,omitempty"` // ended reservations no longer kept whole, oldest first
	Quotas        map[string]*QuotaState   `json:"quotas,omitempty"`
	Subscriptions map[string]*Subscription `json:"subscriptions,omitempty"`
	Commands      []string                 `json:"commands,omitempty"` // the last recentCommands command ids of the customer's subject, oldest first
	// QuotaCommands is the same for the customer's commands on its quota lane. The two are
	// kept apart because they are ordered by different subjects: ApplyOwn folds a command of
	// the customer's subject ahead of a lane entry the stream holds before it, and one list in
	// the order of arrival would then differ from the replay's (replay --verify failed so).
	QuotaCommands []string       `json:"quota_commands,omitempty"`
	Debited       events.Credits `json:"debited"`       // usage debits
	CreditedBack  events.Credits `json:"credited_back"` // credit-backs, as a positive amount
	Committed     events.Credits `json:"committed"`     // reservation commits
	Expired       events.Credits `json:"expired"`       // credits lost to block expiry
	Unrated       int64          `json:"unrated_events"`
	Entries       int64          `json:"entries"`
	LastSeq       uint64         `json:"last_seq"` // ledger sequence of the customer's last entry
	UsageSeq      uint64         `json:"usage_seq"`
	UsageIndex    int            `json:"usage_index"`
	UsageRules    []uint64       `json:"usage_rules,omitempty"` // hashes (ruleKey) of the rules charged for the event at UsageSeq
	UnratedSeq    uint64         `json:"unrated_seq"`

	// Kept exactly by the fold, and counted again when a snapshot is read (recount), so a busy
	// customer's decisions do not scan all its reservations: ended counts the ended ones (is
	// there anything to forget?); held sums the amounts of the active ones and firstExpiry is
	// the earliest of their expiries (zero when none), so Reserved before it is held.
	ended       int
	held        events.Credits
	firstExpiry time.Time
	// lastExpiry is at or after the latest expiry of the active ones: exact when counted, and
	// left as it is when a hold ends, so it may be later than that (holdsAfterStayFunded only
	// needs to know that no hold outlasts a new one).
	lastExpiry time.Time

	// gen is the snapshot generation the account was made or copied in (Ledger.snapGen): a
	// snapshot encodes the accounts it took without the lock, so the fold copies an account
	// from an earlier generation before changing it (copy on write).
	gen uint64
	// due, set only while its ledger applies an entry (and keeps an expiry index), collects the
	// times the entry made due — a block's expiry, a hold's, a postpaid cycle's end — into the
	// ledger's scratch, which the index takes right after.
	due *[]dueAt
}

// recount sets ended, held and firstExpiry from Reservations (after a snapshot is read).
func (a *Account) recount() {
	a.ended, a.held, a.firstExpiry, a.lastExpiry = 0, 0, time.Time{}, time.Time{}
	for _, r := range a.Reservations {
		if r.Status != StatusActive {
			a.ended++
			continue
		}
		a.held += r.Amount
		if a.firstExpiry.IsZero() || r.ExpiresAt.Before(a.firstExpiry) {
			a.firstExpiry = r.ExpiresAt
		}
		if r.ExpiresAt.After(a.lastExpiry) {
			a.lastExpiry = r.ExpiresAt
		}
	}
}

// holdStarted and holdEnded keep the counts as a reservation starts and ends.
func (a *Account) holdStarted(r *Reservation) {
	a.noteDue(r.ExpiresAt, dueHold)
	a.held += r.Amount
	if a.firstExpiry.IsZero() || r.ExpiresAt.Before(a.firstExpiry) {
		a.firstExpiry = r.ExpiresAt
	}
	if r.ExpiresAt.After(a.lastExpiry) {
		a.lastExpiry = r.ExpiresAt
	}
}

func (a *Account) holdEnded(r *Reservation) {
	a.ended++
	a.held -= r.Amount
	if !r.ExpiresAt.After(a.firstExpiry) { // it was the earliest: find the next
		a.firstExpiry = time.Time{}
		for _, o := range a.Reservations {
			if o.Status == StatusActive && (a.firstExpiry.IsZero() || o.ExpiresAt.Before(a.firstExpiry)) {
				a.firstExpiry = o.ExpiresAt
			}
		}
	}
}

func newAccount(customer string) *Account {
	return &Account{Customer: customer} // maps are made on first use: most customers never reserve
}

// Balance is what is left in the blocks eligible at now, plus stray credit, minus overage.
// Sums saturate (addCredits): many grants near the largest amount must not wrap to a negative
// balance.
func (a *Account) Balance(now time.Time) events.Credits {
	var sum events.Credits
	for _, b := range a.Blocks {
		if b.eligible(now) {
			sum = addCredits(sum, b.Remaining)
		}
	}
	return SubCredits(addCredits(sum, a.Credit), a.Overage)
}

// Reserved is what active, unexpired reservations hold at now.
func (a *Account) Reserved(now time.Time) events.Credits {
	if a.firstExpiry.IsZero() || now.Before(a.firstExpiry) {
		return a.held // none of the active ones has expired yet
	}
	var sum events.Credits
	for _, r := range a.Reservations {
		if r.StatusAt(now) == StatusActive {
			sum = addCredits(sum, r.Amount)
		}
	}
	return sum
}

// Effective is the balance less what is reserved.
func (a *Account) Effective(now time.Time) events.Credits {
	return SubCredits(a.Balance(now), a.Reserved(now))
}

// block finds a block by id.
func (a *Account) block(id string) *Block {
	for _, b := range a.Blocks {
		if b.ID == id {
			return b
		}
	}
	return nil
}

// allocate burns amount (> 0) at t in burn order and returns the allocations; what no block
// covers is an allocation without a block and adds to overage.
// allocate burns amount at t in burn order; with record it returns what each block gave.
func (a *Account) allocate(t time.Time, amount events.Credits, record bool) []events.Allocation {
	var out []events.Allocation
	left := amount
	for _, b := range a.Blocks {
		if left == 0 {
			break
		}
		if !b.eligible(t) {
			continue
		}
		take := min(b.Remaining, left)
		b.Remaining -= take
		left -= take
		if record {
			out = append(out, events.Allocation{Block: b.ID, Amount: take})
		}
	}
	if left > 0 {
		a.Overage = addCredits(a.Overage, left)
		if record {
			out = append(out, events.Allocation{Amount: left})
		}
	}
	return out
}

// Allocations previews what burning amount at t would take, without changing the account.
func (a *Account) Allocations(t time.Time, amount events.Credits) []events.Allocation {
	// allocate changes only the blocks and the overage: copy those, not the whole account
	// (a busy customer's account holds hundreds of reservations).
	c := Account{Blocks: make([]*Block, len(a.Blocks)), Overage: a.Overage}
	for i, b := range a.Blocks {
		bb := *b
		c.Blocks[i] = &bb
	}
	return c.allocate(t, amount, true)
}

// refund gives back amount (> 0) of a credit-back for usage at t: first against overage, then
// into blocks in burn order up to what each had given, and the rest as stray credit. A block
// already expired at t is passed over even before its expiry entry is folded (that entry
// would take the refund away again).
func (a *Account) refund(t time.Time, amount events.Credits) {
	left := amount
	pay := min(a.Overage, left)
	a.Overage -= pay
	left -= pay
	for _, b := range a.Blocks {
		if left == 0 {
			break
		}
		if b.Expired || b.ExpiresAt != nil && !t.Before(*b.ExpiresAt) {
			continue
		}
		give := min(b.Granted-b.Remaining, left)
		if give > 0 && b.ExpiresAt != nil {
			a.noteDue(*b.ExpiresAt, dueBlock) // it may have been found used up at its expiry
		}
		b.Remaining += give
		left -= give
	}
	a.Credit += left
}

// debit applies a recorded allocation list (a commit decided on this very state), or burns
// in burn order when none was recorded (usage debits).
func (a *Account) applyAllocations(t time.Time, amount events.Credits, allocs []events.Allocation) []events.Allocation {
	if len(allocs) == 0 {
		return a.allocate(t, amount, true)
	}
	var out []events.Allocation
	for _, al := range allocs {
		if al.Block == "" {
			a.Overage = addCredits(a.Overage, al.Amount)
			out = append(out, al)
			continue
		}
		b := a.block(al.Block)
		if b == nil || b.Remaining < al.Amount {
			// Cannot happen for entries decided on this state; fold what can be folded.
			out = append(out, a.allocate(t, al.Amount, true)...)
			continue
		}
		b.Remaining -= al.Amount
		out = append(out, al)
	}
	return out
}

func (a *Account) addBlock(b *Block) {
	i, _ := slices.BinarySearchFunc(a.Blocks, b, BurnOrder)
	a.Blocks = slices.Insert(a.Blocks, i, b)
	if b.ExpiresAt != nil {
		a.noteDue(*b.ExpiresAt, dueBlock)
	}
}

// recentCommands is how many command ids an account remembers: enough for retries in flight.
const recentCommands = 32

func (a *Account) rememberCommand(cmd string) { a.Commands = remember(a.Commands, cmd) }

func (a *Account) rememberQuotaCommand(cmd string) { a.QuotaCommands = remember(a.QuotaCommands, cmd) }

func remember(cmds []string, cmd string) []string {
	cmds = append(cmds, cmd)
	if len(cmds) > recentCommands {
		cmds = cmds[len(cmds)-recentCommands:]
	}
	return cmds
}

// HasCommand reports whether the command with this id was already carried out.
func (a *Account) HasCommand(cmd string) bool {
	return slices.Contains(a.Commands, cmd) || slices.Contains(a.QuotaCommands, cmd)
}

func (a *Account) clone() *Account {
	c := *a
	c.due = nil
	c.Commands = slices.Clone(a.Commands)
	c.QuotaCommands = slices.Clone(a.QuotaCommands)
	c.UsageRules = slices.Clone(a.UsageRules)
	c.Forgotten = slices.Clone(a.Forgotten)
	c.Blocks = nil // as it was when nil: a copy must encode as the original does ("blocks":null)
	if a.Blocks != nil {
		c.Blocks = make([]*Block, len(a.Blocks))
	}
	for i, b := range a.Blocks {
		bb := *b
		c.Blocks[i] = &bb
	}
	c.Reservations = nil
	if a.Reservations != nil {
		c.Reservations = make(map[string]*Reservation, len(a.Reservations))
	}
	for k, r := range a.Reservations {
		rr := *r
		c.Reservations[k] = &rr
	}
	c.Subscriptions = nil
	if a.Subscriptions != nil {
		c.Subscriptions = make(map[string]*Subscription, len(a.Subscriptions))
	}
	for k, sub := range a.Subscriptions {
		ss := *sub
		c.Subscriptions[k] = &ss
	}
	c.Quotas = cloneQuotas(a.Quotas)
	return &c
}

func cloneQuotas(m map[string]*QuotaState) map[string]*QuotaState {
	if m == nil {
		return nil
	}
	c := make(map[string]*QuotaState, len(m))
	for k, q := range m {
		qq := *q
		qq.Windows = slices.Clone(q.Windows)
		c[k] = &qq
	}
	return c
}

// quotaCopy is a copy of the account's quota state alone: what deciding increments reads and
// changes (QuotaCommands decides a batch of them one after another on it).
func (a *Account) quotaCopy() *Account {
	return &Account{Customer: a.Customer, Quotas: cloneQuotas(a.Quotas)}
}

// addCredits is a + b held at the ends of the int64 range instead of wrapping: each debit fits
// (rating checks it), but a customer's totals of enormous ones need not, and a wrapped overage
// would turn a debt of 10^13 credits into a balance of as much.
// SubCredits is a − b, saturating at the int64 micro-credits' ends like addCredits rather
// than wrapping around to the other sign: a balance, its holds and a price are each in range,
// and the differences the API reports and decides on must keep their sign.
func SubCredits(a, b events.Credits) events.Credits {
	s := a - b
	switch {
	case b < 0 && s < a:
		return math.MaxInt64
	case b > 0 && s > a:
		return math.MinInt64
	}
	return s
}

func addCredits(a, b events.Credits) events.Credits {
	s := a + b
	switch {
	case b > 0 && s < a:
		return math.MaxInt64
	case b < 0 && s > a:
		return math.MinInt64
	}
	return s
}
