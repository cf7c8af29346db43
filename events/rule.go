package events

import (
	"strconv"
	"time"
)

// KindRule is the config kind of metering rules.
const KindRule = "rule"

// TypeRuleVersioned records one immutable version of a metering rule.
const TypeRuleVersioned = "rule.versioned.v1"

// Pricing models.
const (
	ModelFlat      = "flat"      // a fixed price per event
	ModelPerUnit   = "per_unit"  // price per unit, or per started package of PackageSize units
	ModelGraduated = "graduated" // each slice of quantity at its own tier's price, plus entered tiers' flat fees
	ModelVolume    = "volume"    // the whole quantity at the price of the tier it reaches, plus that tier's flat fee
)

// Tier scopes.
const (
	TierScopePeriod = "period" // tiers apply to the customer's cumulative quantity in the rule's period
	TierScopeEvent  = "event"  // tiers apply to each event's quantity alone
)

// Tier is one price band. UpTo is the inclusive upper bound; nil on the last, open tier.
type Tier struct {
	UpTo      *Decimal `json:"up_to,omitempty"`
	UnitPrice Decimal  `json:"unit_price"`
	FlatFee   *Decimal `json:"flat_fee,omitempty"`
}

// Rule turns a meter's quantity into credits. Each version is immutable; the version in force
// for an event is the one with the latest EffectiveFrom at or before the event's time.
type Rule struct {
	Key           string    `json:"key"`
	Version       int       `json:"version"`
	Meter         string    `json:"meter"`
	Model         string    `json:"model"`
	Price         *Decimal  `json:"price,omitempty"`
	PackageSize   *Decimal  `json:"package_size,omitempty"`
	Tiers         []Tier    `json:"tiers,omitempty"`
	TierScope     string    `json:"tier_scope"`
	Period        *Period   `json:"period,omitempty"` // for the period scope; default calendar month, UTC
	EffectiveFrom time.Time `json:"effective_from"`
}

// RuleVersioned is the config event carrying one rule version.
type RuleVersioned struct {
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Rule    Rule      `json:"rule"`
	At      time.Time `json:"at"`
}

// TypeUsageUnrated records a metered usage event that no rule version priced, so it is
// visible in the ledger instead of silently dropped.
const TypeUsageUnrated = "usage.unrated.v1"

// UsageUnrated is a metered event with no rule in force at its time.
type UsageUnrated struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	EventID   string    `json:"event_id"`
	EventType string    `json:"event_type"`
	Meters    []string  `json:"meters"`
	Reasons   []string  `json:"reasons"` // per meter: no_rule, bad_value or overflow
	UsageSeq  uint64    `json:"usage_seq"`
	EventTime time.Time `json:"event_time"`
}

// RuleHistory is every version of one rule, in version order.
type RuleHistory struct {
	Key      string
	Versions []Rule
}

// InForce returns the version in force at t: the latest EffectiveFrom at or before t (the
// higher version when two share it). ok is false before the first version takes effect.
func (h RuleHistory) InForce(t time.Time) (Rule, bool) {
	var best Rule
	found := false
	for _, v := range h.Versions {
		if v.EffectiveFrom.After(t) {
			continue
		}
		if !found || !v.EffectiveFrom.Before(best.EffectiveFrom) {
			best, found = v, true
		}
	}
	return best, found
}

// TypeUsageRated records what rating wrote for one customer from one batch of the usage
// stream: the debits (and credit-backs) and the unrated events, in usage stream order.
// Batching per customer keeps ledger writes well below one per event.
const TypeUsageRated = "usage.rated.v1"

// UsageRated is a batch of one customer's rating results. Its id derives from the customer and
// the usage sequences it spans, so a batch written twice is deduplicated; after a crash a
// re-rate may split the same events into different batches, so readers apply each item at
// most once by its usage position (UsageSeq and rule for debits — DebitCharged — and UsageSeq
// for unrated events), which only ever grows per customer.
type UsageRated struct {
	ID       string         `json:"id"`
	Customer string         `json:"customer"`
	FirstSeq uint64         `json:"first_seq"`
	LastSeq  uint64         `json:"last_seq"`
	Debits   []UsageDebited `json:"debits,omitempty"`
	Unrated  []UsageUnrated `json:"unrated,omitempty"`
	// Quota use of the batch's events (quotas on count and sum meters), in usage order.
	Quotas []QuotaUse `json:"quotas,omitempty"`
}

// TypeRatingView records that a rating partition rates its usage after sequence After on the
// configuration as it stood at config sequence Config (a rating view). A worker writes one on
// the config stream, under RatingViewSubject, before it rates anything on a view: when it
// starts, and when it moves to a newer configuration. A later record for a partition replaces
// what the earlier ones said about the sequences after its own After (a worker restarted from
// an older snapshot re-rates those on the view it names), so the records, read in stream
// order, say which view rated each usage event: what lets replay rebuild rating's state.
const TypeRatingView = "rating.view.v1"

// RatingView is the body of a rating.view.v1 record.
type RatingView struct {
	Partition int    `json:"partition"`
	After     uint64 `json:"after_seq"`            // usage stream sequence: events after it are rated on Config
	Config    uint64 `json:"config_seq,omitempty"` // config stream sequence of the view
	// Unknown says the events after After were rated on views nobody recorded (by an allot
	// from before the records, during a rolling upgrade): Config means nothing then.
	Unknown bool `json:"unknown,omitempty"`
}

// RatingViewSubject is where a rating partition's view records go on the config stream: four
// tokens, never one of ConfigSubject's six.
func RatingViewSubject(partition int) string {
	return ConfigPrefix + ".rating.p" + strconv.Itoa(partition)
}
