package events

import (
	"slices"
	"time"
)

// Ledger events live on the ledger stream under LedgerSubject(product, env, customer). Every
// change to a customer's credits is one of them; balances are a fold of the stream.

// Block sources and their default burn priorities (lower burns first).
const (
	SourcePlan     = "plan"
	SourceTopup    = "topup"
	SourcePromo    = "promo"
	SourceTrial    = "trial"
	SourceRollover = "rollover"
	SourceWallet   = "wallet"
)

// DefaultPriority returns the burn priority of a block source when a grant names none.
func DefaultPriority(source string) (int, bool) {
	switch source {
	case SourceTrial, SourcePromo:
		return 10, true
	case SourcePlan:
		return 20, true
	case SourceRollover:
		return 30, true
	case SourceTopup:
		return 40, true
	case SourceWallet:
		return 100, true
	}
	return 0, false
}

// TypeCreditsGranted records a new credit block.
const TypeCreditsGranted = "credits.granted.v1"

// CreditsGranted creates a credit block. ExpiresAt nil means never.
type CreditsGranted struct {
	Block       string     `json:"block"` // block id
	Customer    string     `json:"customer"`
	Amount      Credits    `json:"amount"`
	Source      string     `json:"source"`
	Priority    int        `json:"priority"`
	EffectiveAt time.Time  `json:"effective_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CostBasis   *Decimal   `json:"cost_basis,omitempty"`
	At          time.Time  `json:"at"`
}

// TypeUsageDebited records the credits one usage event cost under one rule version.
const TypeUsageDebited = "usage.debited.v1"

// Kinds of usage.debited.v1 entries.
const (
	KindDebit      = "debit"
	KindCreditBack = "credit_back"
)

// Allocation is the part of a debit taken from one block; an empty Block is overage.
type Allocation struct {
	Block  string  `json:"block,omitempty"`
	Amount Credits `json:"amount"`
}

// UsageDebited is a rated usage event. Its id is derived from (event id, rule, rule version)
// so a redelivered event yields the same message id and JetStream drops the copy. Amount may
// be negative: a credit-back when volume pricing lowers a period's total.
//
// UsageSeq places the debit in the usage stream: a customer's debits are written in usage
// order, so a fold skips any debit of an event before the last it charged, and for that event
// any of a rule it charged already (DebitCharged), whatever JetStream's dedup window.
type UsageDebited struct {
	ID          string       `json:"id"`
	Kind        string       `json:"kind"` // debit, or credit_back when the amount is negative
	Customer    string       `json:"customer"`
	EventID     string       `json:"event_id"`
	Rule        string       `json:"rule"`
	RuleVersion int          `json:"rule_version"`
	Quantity    Decimal      `json:"quantity"` // the event's quantity for this rule's meter
	Amount      Credits      `json:"amount"`
	Allocations []Allocation `json:"allocations,omitempty"`
	EventTime   time.Time    `json:"event_time"`
	UsageSeq    uint64       `json:"usage_seq"`
	RuleIndex   int          `json:"rule_index"`
	// For the period tier scope: the window and the cumulative quantity after this event.
	PeriodStart    *time.Time `json:"period_start,omitempty"`
	PeriodQuantity *Decimal   `json:"period_quantity,omitempty"`
}

// DebitCharged reports whether the debit of rule (at index in its entry) for the usage event
// at seq was charged already, given the last event charged (lastSeq, lastIndex) and the rules
// charged for it. Keyed by rule, not by index: after a crash the rating worker re-rates with
// the rules in force then, and a rule added meanwhile shifts the indexes — by index the old
// rule's debit, now one further along, would be charged twice. Entries without a rule key, and
// state kept before rules were recorded (no lastRules), fall back to the index.
func DebitCharged[K comparable](lastSeq uint64, lastIndex int, lastRules []K, seq uint64, index int, rule K) bool {
	var none K
	switch {
	case lastSeq == 0 || seq > lastSeq:
		return false
	case seq < lastSeq:
		return true
	case rule != none && len(lastRules) > 0:
		return slices.Contains(lastRules, rule)
	default:
		return index <= lastIndex
	}
}

// TypeCreditsExpired records that a block expired with credits left; they leave the balance.
const TypeCreditsExpired = "credits.expired.v1"

// CreditsExpired zeroes what was left of a block at its expiry.
type CreditsExpired struct {
	Block    string    `json:"block"`
	Customer string    `json:"customer"`
	Amount   Credits   `json:"amount"` // what was left
	At       time.Time `json:"at"`     // the block's expires_at
}

// Reservation events.
const (
	TypeReservationCreated   = "reservation.created.v1"
	TypeReservationCommitted = "reservation.committed.v1"
	TypeReservationReleased  = "reservation.released.v1"
	TypeReservationExpired   = "reservation.expired.v1"
	// TypeReservationsCreated is several holds of one customer decided together, one after
	// another (group commit): each as reservation.created.v1 would be.
	TypeReservationsCreated = "reservations.created.v1"
)

// ReservationCreated holds credits until ExpiresAt.
type ReservationCreated struct {
	Reservation string    `json:"reservation"`
	Customer    string    `json:"customer"`
	Amount      Credits   `json:"amount"`
	ExpiresAt   time.Time `json:"expires_at"`
	At          time.Time `json:"at"`
}

// ReservationsCreated is a batch of one customer's holds, in the order they were decided.
type ReservationsCreated struct {
	Customer     string               `json:"customer"`
	Reservations []ReservationCreated `json:"reservations"`
}

// ReservationCommitted turns a hold into a debit of Amount (which may be less or more than
// held), allocated to blocks in burn order at commit time.
type ReservationCommitted struct {
	Reservation string       `json:"reservation"`
	Customer    string       `json:"customer"`
	Amount      Credits      `json:"amount"`
	Allocations []Allocation `json:"allocations,omitempty"`
	At          time.Time    `json:"at"`
}

// ReservationReleased ends a hold without a debit (ReservationExpired: at its TTL).
type ReservationReleased struct {
	Reservation string    `json:"reservation"`
	Customer    string    `json:"customer"`
	At          time.Time `json:"at"`
}
