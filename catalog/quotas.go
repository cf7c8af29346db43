package catalog

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// QuotaSpec is the body of PUT /v1/quotas/{key}.
type QuotaSpec struct {
	Meter     string                    `json:"meter"`
	Limit     *events.Decimal           `json:"limit"`
	Period    *events.Period            `json:"period"`
	Overrides map[string]events.Decimal `json:"overrides,omitempty"`
}

// ValidateQuota checks a quota against the catalog. Quotas count explicit increments
// ("requests") or a count or sum meter: a window's use must only grow with events.
func (c *Catalog) ValidateQuota(scope events.Scope, key string, s QuotaSpec) (events.Quota, *FieldError) {
	q := events.Quota{Key: key, Meter: s.Meter, Overrides: s.Overrides, Scope: scope}
	if fe := ValidateObjectKey(key); fe != nil {
		return q, fe
	}
	switch s.Meter {
	case "":
		return q, fieldErr("meter", `meter is required: a meter key, or "requests" for explicit increments only`)
	case events.MeterRequests:
	default:
		m, ok := c.Meter(scope, s.Meter)
		if !ok {
			return q, fieldErr("meter", "no meter %q in this product and env", s.Meter)
		}
		if m.Aggregation != events.AggCount && m.Aggregation != events.AggSum {
			return q, fieldErr("meter", "quotas count count and sum meters; %q aggregates with %s", s.Meter, m.Aggregation)
		}
	}
	if s.Limit == nil {
		return q, fieldErr("limit", "limit is required")
	}
	if s.Limit.Sign() <= 0 {
		return q, fieldErr("limit", "must be greater than 0")
	}
	q.Limit = *s.Limit
	for cust, l := range s.Overrides {
		if l.Sign() < 0 {
			return q, fieldErr("overrides."+cust, "must not be negative")
		}
		if id := events.CustomerID(scope, cust); id != cust {
			if _, twice := s.Overrides[id]; twice {
				return q, fieldErr("overrides."+cust, "names the customer overrides.%s names too (allot's id of %q): give one", id, cust)
			}
		}
	}
	if s.Period == nil {
		return q, fieldErr("period", "period is required: {unit, count?, mode?, anchor?, time_zone?}")
	}
	p, err := s.Period.Normalize()
	if err != nil {
		var pe *events.PeriodError
		if errors.As(err, &pe) {
			return q, fieldErr("period."+pe.Field, "%s", pe.Msg)
		}
		return q, fieldErr("period", "%v", err)
	}
	q.Period = p
	if len(q.Overrides) == 0 {
		q.Overrides = nil
	}
	return q.WithScope(scope), nil
}

// PutQuota stores a validated quota unless it is unchanged. Changes apply at once.
func PutQuota(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, q events.Quota, now time.Time) (int, error) {
	if have, ok := cat.Quota(sc, q.Key); ok && reflect.DeepEqual(normalizeRule(have), normalizeRule(q)) {
		return 0, nil
	}
	e := events.QuotaDefined{Product: sc.Product, Env: sc.Env, Quota: q, At: now.UTC()}
	if _, err := Publish(ctx, js, cat, events.ConfigSubject(sc.Product, sc.Env, events.KindQuota, q.Key), events.TypeQuotaDefined, e); err != nil {
		return 0, err
	}
	return 1, nil
}
