package events

import "time"

// Configuration is event-sourced: each change is one of these events on the config stream,
// under ConfigSubject(product, env, kind, key). Replaying the stream gives the configuration
// in force at any sequence, which is what lets rating be replayed exactly.

// Config kinds (the <kind> token of a config subject).
const (
	KindAPIKey = "apikey"
	KindMeter  = "meter"
)

// TypeAPIKeyCreated records an API key. Only the SHA-256 of the key is stored: keys are long
// random strings, so a fast hash is enough and lets every request be checked in nanoseconds.
const TypeAPIKeyCreated = "apikey.created.v1"

// APIKeyCreated is a key bound to one product and env.
type APIKeyCreated struct {
	Hash    string    `json:"hash"` // hex SHA-256 of the whole key
	Prefix  string    `json:"prefix"`
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Admin   bool      `json:"admin"`
	At      time.Time `json:"at"`
}

// TypeMeterDefined records a meter definition; the latest per key is in force.
const TypeMeterDefined = "meter.defined.v1"

// Aggregations a meter may use.
const (
	AggCount       = "count"
	AggSum         = "sum"
	AggMax         = "max"
	AggUniqueCount = "unique_count"
	AggLatest      = "latest"
)

// Meter says which usage events count and how.
type Meter struct {
	Key           string            `json:"key"`
	EventType     string            `json:"event_type"`
	Aggregation   string            `json:"aggregation"`
	ValueProperty string            `json:"value_property,omitempty"`
	Filters       map[string]string `json:"filters,omitempty"`
	GroupBy       []string          `json:"group_by,omitempty"`
}

// MeterDefined is the config event carrying a meter.
type MeterDefined struct {
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Meter   Meter     `json:"meter"`
	At      time.Time `json:"at"`
}

// NeedsValue reports whether the meter reads a property's value (everything but count).
func (m Meter) NeedsValue() bool { return m.Aggregation != AggCount }

// NumericValue reports whether the value property must be a decimal number.
func (m Meter) NumericValue() bool {
	return m.Aggregation == AggSum || m.Aggregation == AggMax || m.Aggregation == AggLatest
}

// Matches reports whether an event of type typ with properties data is counted by m: the type
// is equal and every filter property, written as text, equals the filter's value.
func (m Meter) Matches(typ string, data map[string]any) bool {
	if typ != m.EventType {
		return false
	}
	for k, want := range m.Filters {
		v, ok := data[k]
		if !ok || PropertyText(v) != want {
			return false
		}
	}
	return true
}

// PropertyText is the text form of a scalar property value, used by filters and group-by.
func PropertyText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case interface{ String() string }:
		return x.String()
	case bool:
		if x {
			return "true"
		}
		return "false"
	case nil:
		return ""
	default:
		return ""
	}
}

// KindFeature is the config kind of features.
const KindFeature = "feature"

// TypeFeatureDefined records what an entitlement check for a feature prices.
const TypeFeatureDefined = "feature.defined.v1"

// Feature is what an entitlement check prices: a rule (its version in force now) and how far
// below zero the effective balance may go.
type Feature struct {
	Key            string  `json:"key"`
	Rule           string  `json:"rule,omitempty"`
	OverdraftLimit Credits `json:"overdraft_limit"`
	Disabled       bool    `json:"disabled,omitempty"`
}

// FeatureDefined is the config event carrying a feature.
type FeatureDefined struct {
	Product string    `json:"product"`
	Env     string    `json:"env"`
	Feature Feature   `json:"feature"`
	At      time.Time `json:"at"`
}
