package catalog

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// RuleSpec is the body of PUT /v1/rules/{key} (and a rule in the config file).
type RuleSpec struct {
	Meter         string          `json:"meter"`
	Model         string          `json:"model"`
	Price         *events.Decimal `json:"price,omitempty"`
	PackageSize   *events.Decimal `json:"package_size,omitempty"`
	Tiers         []events.Tier   `json:"tiers,omitempty"`
	TierScope     string          `json:"tier_scope,omitempty"`
	Period        *events.Period  `json:"period,omitempty"`
	EffectiveFrom *time.Time      `json:"effective_from,omitempty"`
}

// ValidateRule checks a rule definition against the catalog and returns the rule it defines
// (without a version). now is the default effective_from.
func (c *Catalog) ValidateRule(scope events.Scope, key string, s RuleSpec, now time.Time) (events.Rule, *FieldError) {
	r := events.Rule{Key: key, Meter: s.Meter, Model: s.Model, Price: s.Price, PackageSize: s.PackageSize, Tiers: s.Tiers, TierScope: s.TierScope, Period: s.Period}
	if fe := ValidateObjectKey(key); fe != nil {
		return r, fe
	}
	if s.Meter == "" {
		return r, fieldErr("meter", "meter is required")
	}
	if _, ok := c.Meter(scope, s.Meter); !ok {
		return r, fieldErr("meter", "no meter %q in this product and env; define it first (PUT /v1/meters/%s)", s.Meter, s.Meter)
	}
	if vs := c.RuleVersions(scope, key); len(vs) > 0 && vs[len(vs)-1].Meter != s.Meter {
		return r, fieldErr("meter", "rule %q prices meter %q; a rule's meter cannot change, create a new rule", key, vs[len(vs)-1].Meter)
	}
	nonNegative := func(field string, d *events.Decimal) *FieldError {
		if d != nil && d.Sign() < 0 {
			return fieldErr(field, "must not be negative, got %s", d)
		}
		return nil
	}
	switch s.Model {
	case events.ModelFlat, events.ModelPerUnit:
		if s.Price == nil {
			return r, fieldErr("price", "model %q needs a price", s.Model)
		}
		if fe := nonNegative("price", s.Price); fe != nil {
			return r, fe
		}
		if len(s.Tiers) > 0 {
			return r, fieldErr("tiers", "model %q takes a price, not tiers", s.Model)
		}
		if s.PackageSize != nil {
			if s.Model != events.ModelPerUnit {
				return r, fieldErr("package_size", "only per_unit rules take a package_size")
			}
			if s.PackageSize.Sign() <= 0 {
				return r, fieldErr("package_size", "must be greater than 0")
			}
		}
	case events.ModelGraduated, events.ModelVolume:
		if s.Price != nil {
			return r, fieldErr("price", "model %q takes tiers, not a price", s.Model)
		}
		if s.PackageSize != nil {
			return r, fieldErr("package_size", "only per_unit rules take a package_size")
		}
		if len(s.Tiers) == 0 {
			return r, fieldErr("tiers", "model %q needs at least one tier", s.Model)
		}
		var prev *events.Decimal
		for i, t := range s.Tiers {
			f := fmt.Sprintf("tiers[%d]", i)
			last := i == len(s.Tiers)-1
			switch {
			case last && t.UpTo != nil:
				return r, fieldErr(f+".up_to", "the last tier must be open: remove its up_to")
			case !last && t.UpTo == nil:
				return r, fieldErr(f+".up_to", "only the last tier may be open; this one needs an up_to")
			case t.UpTo != nil && t.UpTo.Sign() <= 0:
				return r, fieldErr(f+".up_to", "must be greater than 0")
			case t.UpTo != nil && prev != nil && t.UpTo.Cmp(*prev) <= 0:
				return r, fieldErr(f+".up_to", "tiers must be sorted by up_to without overlap: %s is not above %s", t.UpTo, prev)
			}
			if fe := nonNegative(f+".unit_price", &t.UnitPrice); fe != nil {
				return r, fe
			}
			if fe := nonNegative(f+".flat_fee", t.FlatFee); fe != nil {
				return r, fe
			}
			prev = t.UpTo
		}
	case "":
		return r, fieldErr("model", "model is required: flat, per_unit, graduated or volume")
	default:
		return r, fieldErr("model", "%q is not one of flat, per_unit, graduated, volume", s.Model)
	}
	switch r.TierScope {
	case "":
		r.TierScope = events.TierScopePeriod
	case events.TierScopePeriod, events.TierScopeEvent:
	default:
		return r, fieldErr("tier_scope", "%q is not one of period, event", r.TierScope)
	}
	if r.Period != nil {
		if r.TierScope != events.TierScopePeriod {
			return r, fieldErr("period", "only the period tier scope takes a period")
		}
		p, err := r.Period.Normalize()
		if err != nil {
			var pe *events.PeriodError
			if errors.As(err, &pe) {
				return r, fieldErr("period."+pe.Field, "%s", pe.Msg)
			}
			return r, fieldErr("period", "%v", err)
		}
		r.Period = &p
	} else if r.TierScope == events.TierScopePeriod && r.Model != events.ModelFlat {
		p, _ := events.Period{Unit: events.UnitMonth}.Normalize()
		r.Period = &p
	}
	r.EffectiveFrom = now.UTC()
	if s.EffectiveFrom != nil {
		if !events.TimeInRange(*s.EffectiveFrom) {
			return r, fieldErr("effective_from", "%s", events.TimeRangeMsg)
		}
		r.EffectiveFrom = s.EffectiveFrom.UTC()
	}
	return r, nil
}

// ErrRuleUnchanged is returned by PutRule when the definition equals the latest version.
var ErrRuleUnchanged = errors.New("rule unchanged")

// PutRule stores r as the rule's next version. Versions are decided on the catalog's state
// and appended with the subject's expected last sequence, so two writers never both create
// version n; the loser re-reads and becomes n+1. With skipSame, a definition equal to the
// latest version (ignoring effective_from) is not written again (ErrRuleUnchanged).
func PutRule(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, r events.Rule, now time.Time, skipSame bool) (events.Rule, error) {
	subject := events.ConfigSubject(sc.Product, sc.Env, events.KindRule, r.Key)
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			// Lost the race for this version: back off a little, with jitter.
			time.Sleep(time.Duration(rand.IntN(1+min(attempt, 20))*200) * time.Microsecond)
		}
		vs, lastSeq := cat.ruleState(sc, r.Key)
		if skipSame && len(vs) > 0 {
			latest := vs[len(vs)-1]
			cand := r
			cand.Version, cand.EffectiveFrom = latest.Version, latest.EffectiveFrom
			if reflect.DeepEqual(normalizeRule(cand), normalizeRule(latest)) {
				return latest, ErrRuleUnchanged
			}
		}
		r.Version = len(vs) + 1
		e := events.RuleVersioned{Product: sc.Product, Env: sc.Env, Rule: r, At: now.UTC()}
		_, err := publishExpect(ctx, js, cat, subject, events.TypeRuleVersioned, e, lastSeq)
		if err == nil {
			return r, nil
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence && time.Now().Before(deadline) {
			// Another process wrote a version first: catch up and try as the next one.
			if err := cat.syncTo(ctx, js); err != nil {
				return r, err
			}
			continue
		}
		return r, err
	}
}

// normalizeRule makes equal definitions compare equal (decimals by value).
func normalizeRule(r any) string {
	b, _ := jsonMarshal(r)
	return string(b)
}

func publishExpect(ctx context.Context, js jetstream.JetStream, cat *Catalog, subject, typ string, v any, lastSeq uint64) (uint64, error) {
	data, err := jsonMarshal(v)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", typ, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{typ}}}
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(lastSeq))
	if err != nil {
		return 0, fmt.Errorf("publishing %s to %s: %w", typ, subject, err)
	}
	return ack.Sequence, cat.WaitFor(ctx, ack.Sequence)
}
