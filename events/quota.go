package events

import "time"

// KindQuota is the config kind of quotas.
const KindQuota = "quota"

// TypeQuotaDefined records a quota policy; the latest per key is in force, at once.
const TypeQuotaDefined = "quota.defined.v1"

// MeterRequests is the pseudo-meter of quotas counted only by explicit increments.
const MeterRequests = "requests"

// Quota limits a meter (or explicit increments, Meter "requests") per window per customer.
type Quota struct {
	Key    string  `json:"key"`
	Meter  string  `json:"meter"`
	Limit  Decimal `json:"limit"`
	Period Period  `json:"period"`
	// Overrides are per-customer limits, keyed by the customer's own id or by allot's (the
	// UUID CustomerID derives), as customers are addressed everywhere.
	Overrides map[string]Decimal `json:"overrides,omitempty"`
	// Scope is the product and env the quota belongs to, which allot's customer ids derive
	// from. The catalog sets it (it is the config event's, not part of the quota's JSON).
	Scope Scope `json:"-"`
	// IDKeys says whether any override is keyed by allot's id (LooksLikeCustomerID): only then does
	// LimitFor derive the customer's (a SHA-1, on every check and increment). Set with Scope.
	IDKeys bool `json:"-"`
}

// WithScope is q as the catalog keeps it: its scope, and whether an override names a customer
// by allot's id.
func (q Quota) WithScope(sc Scope) Quota {
	q.Scope, q.IDKeys = sc, false
	for k := range q.Overrides {
		if LooksLikeCustomerID(k) {
			q.IDKeys = true
			break
		}
	}
	return q
}

// LimitFor is the customer's limit (customer is its own id): an override under that id or
// under allot's id of it, or the quota's.
func (q Quota) LimitFor(customer string) Decimal {
	if len(q.Overrides) == 0 {
		return q.Limit
	}
	if l, ok := q.Overrides[customer]; ok {
		return l
	}
	if !q.IDKeys {
		return q.Limit
	}
	if l, ok := q.Overrides[CustomerID(q.Scope, customer)]; ok {
		return l
	}
	return q.Limit
}

// QuotaDefined is the config event carrying a quota.
type QuotaDefined struct {
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Quota   Quota     `json:"quota"`
	At      time.Time `json:"at"`
}

// QuotaUse is an amount counted toward a quota at a time. The period in force when it was
// written travels with it, so the fold places it in a window with no configuration lookup,
// and replay places it in the same one.
type QuotaUse struct {
	Quota  string    `json:"quota"`
	Amount Decimal   `json:"amount"`
	Period Period    `json:"period"`
	At     time.Time `json:"at"`
	// Usage sequence of the usage event it came from (rating), for at-most-once application.
	UsageSeq uint64 `json:"usage_seq,omitempty"`
}

// Quota ledger entries.
const (
	TypeQuotaIncremented = "quota.incremented.v1" // all-or-nothing across its items
	// TypeQuotaIncrements is the increments of several customers decided together on a
	// scope's quota lane (QuotaLaneSubject): each is what quota.incremented.v1 would be.
	TypeQuotaIncrements = "quota.increments.v1"
	TypeQuotaReset      = "quota.reset.v1"
	TypeQuotaAdjusted   = "quota.adjusted.v1"
)

// QuotaIncremented adds each item's amount to its quota's window; it was decided allowed for
// every item together.
type QuotaIncremented struct {
	Customer string     `json:"customer"`
	Items    []QuotaUse `json:"items"`
	At       time.Time  `json:"at"`
}

// QuotaIncrements is a quota lane's group commit: the admitted increments of the requests of
// one batch, in the order they were decided, each all-or-nothing across its own items.
type QuotaIncrements struct {
	Increments []QuotaIncremented `json:"increments"`
}

// QuotaReset sets the used amount of the window holding At to zero (the window is kept).
type QuotaReset struct {
	Customer string    `json:"customer"`
	Quota    string    `json:"quota"`
	Period   Period    `json:"period"`
	At       time.Time `json:"at"`
}

// QuotaAdjusted adds Amount (which may be negative; used never goes below zero) to the
// window holding At.
type QuotaAdjusted struct {
	Customer string    `json:"customer"`
	Quota    string    `json:"quota"`
	Amount   Decimal   `json:"amount"`
	Period   Period    `json:"period"`
	At       time.Time `json:"at"`
}
