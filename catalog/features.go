package catalog

import (
	"context"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// FeatureSpec is the body of PUT /v1/features/{key}.
type FeatureSpec struct {
	Rule           string          `json:"rule,omitempty"`
	OverdraftLimit *events.Credits `json:"overdraft_limit,omitempty"`
	Disabled       bool            `json:"disabled,omitempty"`
}

// ValidateFeature checks a feature against the catalog.
func (c *Catalog) ValidateFeature(scope events.Scope, key string, s FeatureSpec) (events.Feature, *FieldError) {
	f := events.Feature{Key: key, Rule: s.Rule, Disabled: s.Disabled}
	if fe := ValidateObjectKey(key); fe != nil {
		return f, fe
	}
	if s.Rule != "" && len(c.RuleVersions(scope, s.Rule)) == 0 {
		return f, fieldErr("rule", "no rule %q in this product and env", s.Rule)
	}
	if s.OverdraftLimit != nil {
		if *s.OverdraftLimit < 0 {
			return f, fieldErr("overdraft_limit", "must not be negative")
		}
		f.OverdraftLimit = *s.OverdraftLimit
	}
	return f, nil
}

// PutFeature stores a validated feature unless it is unchanged.
func PutFeature(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, f events.Feature, now time.Time) (int, error) {
	if have, ok := cat.Feature(sc, f.Key); ok && reflect.DeepEqual(have, f) {
		return 0, nil
	}
	e := events.FeatureDefined{Product: sc.Product, Env: sc.Env, Feature: f, At: now.UTC()}
	if _, err := Publish(ctx, js, cat, events.ConfigSubject(sc.Product, sc.Env, events.KindFeature, f.Key), events.TypeFeatureDefined, e); err != nil {
		return 0, err
	}
	return 1, nil
}
