package events

import "time"

// KindPlan is the config kind of plans.
const KindPlan = "plan"

// TypePlanDefined records a plan; the latest per key applies to subscriptions started after.
const TypePlanDefined = "plan.defined.v1"

// Plan modes.
const (
	PlanPrepaid  = "prepaid"  // the caller renews each cycle (with a grace period)
	PlanPostpaid = "postpaid" // allot advances the cycle at its end, with a usage summary
)

// Plan grants Credits every Period, as a block expiring at the cycle's end; at renewal,
// RolloverPercent of what is left (at most RolloverCap) carries over as a rollover block.
type Plan struct {
	Key             string   `json:"key"`
	Credits         Credits  `json:"credits"`
	Period          Period   `json:"period"`
	RolloverPercent *Decimal `json:"rollover_percent,omitempty"`
	RolloverCap     *Credits `json:"rollover_cap,omitempty"`
	Mode            string   `json:"mode"`
	GraceSeconds    int      `json:"grace_seconds,omitempty"`
}

// PlanDefined is the config event carrying a plan.
type PlanDefined struct {
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Plan    Plan      `json:"plan"`
	At      time.Time `json:"at"`
}

// Subscription ledger entries, on the customer's ledger subject.
const (
	TypeSubscriptionStarted  = "subscription.started.v1"
	TypeSubscriptionRenewed  = "subscription.renewed.v1"
	TypeSubscriptionCanceled = "subscription.canceled.v1"
)

// SubscriptionStarted starts a subscription on a copy of its plan (later plan changes do not
// reach it) and grants cycle 0.
type SubscriptionStarted struct {
	Subscription string    `json:"subscription"`
	Customer     string    `json:"customer"`
	Plan         Plan      `json:"plan"`
	Start        time.Time `json:"start"`
	Grant        Cycle     `json:"grant"`
	At           time.Time `json:"at"`
}

// Cycle is what one cycle grants: the plan's block and, from cycle 1 on, the rollover block.
type Cycle struct {
	Index     int64     `json:"index"`
	Start     time.Time `json:"start"`
	End       time.Time `json:"end"`
	Block     string    `json:"block"`
	Amount    Credits   `json:"amount"`
	Rollover  Credits   `json:"rollover,omitempty"`
	RollBlock string    `json:"rollover_block,omitempty"`
}

// SubscriptionRenewed grants cycle Grant.Index. The fold applies a cycle at most once, so a
// renewal is applied once per (subscription, cycle) whatever the retries or processes.
type SubscriptionRenewed struct {
	Subscription string    `json:"subscription"`
	Customer     string    `json:"customer"`
	Grant        Cycle     `json:"grant"`
	Usage        *Credits  `json:"usage,omitempty"` // postpaid: credits debited during the cycle that ended
	At           time.Time `json:"at"`
}

// SubscriptionCanceled ends renewals; granted blocks run to their expiry.
type SubscriptionCanceled struct {
	Subscription string `json:"subscription"`
	Customer     string `json:"customer"`
	// Usage is a postpaid subscription's final summary: what was used since its last renewal
	// (the cycle canceled in, and one that ended without being renewed yet).
	Usage *Credits  `json:"usage,omitempty"`
	At    time.Time `json:"at"`
}
