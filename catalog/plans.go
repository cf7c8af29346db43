package catalog

import (
	"context"
	"errors"
	"reflect"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// PlanSpec is the body of PUT /v1/plans/{key}.
type PlanSpec struct {
	Credits         *events.Credits `json:"credits"`
	Period          *events.Period  `json:"period"`
	RolloverPercent *events.Decimal `json:"rollover_percent,omitempty"`
	RolloverCap     *events.Credits `json:"rollover_cap,omitempty"`
	Mode            string          `json:"mode"`
	GraceSeconds    int             `json:"grace_seconds,omitempty"`
}

// ValidatePlan checks a plan. Cycles are counted from each subscription's start, so the period
// takes no mode or anchor.
func ValidatePlan(key string, s PlanSpec) (events.Plan, *FieldError) {
	p := events.Plan{Key: key, RolloverPercent: s.RolloverPercent, RolloverCap: s.RolloverCap, Mode: s.Mode, GraceSeconds: s.GraceSeconds}
	if fe := ValidateObjectKey(key); fe != nil {
		return p, fe
	}
	if s.Credits == nil || *s.Credits <= 0 {
		return p, fieldErr("credits", "credits per cycle must be greater than 0")
	}
	p.Credits = *s.Credits
	if s.Period == nil {
		return p, fieldErr("period", "period is required, e.g. {\"unit\":\"month\"}")
	}
	if s.Period.Mode != "" || !s.Period.Anchor.IsZero() {
		return p, fieldErr("period.mode", "plan cycles start at each subscription's start: give unit, count and time_zone only")
	}
	per, err := events.Period{Unit: s.Period.Unit, Count: s.Period.Count, TimeZone: s.Period.TimeZone, Mode: events.ModeFixed, Anchor: time.Unix(0, 0)}.Normalize()
	if err != nil {
		var pe *events.PeriodError
		if errors.As(err, &pe) {
			return p, fieldErr("period."+pe.Field, "%s", pe.Msg)
		}
		return p, fieldErr("period", "%v", err)
	}
	per.Mode, per.Anchor = "", time.Time{}
	p.Period = per
	switch s.Mode {
	case events.PlanPrepaid, events.PlanPostpaid:
	case "":
		return p, fieldErr("mode", "mode is required: prepaid or postpaid")
	default:
		return p, fieldErr("mode", "%q is not prepaid or postpaid", s.Mode)
	}
	if s.RolloverPercent != nil && (s.RolloverPercent.Sign() < 0 || s.RolloverPercent.Cmp(events.DecimalFromInt(100)) > 0) {
		return p, fieldErr("rollover_percent", "must be between 0 and 100")
	}
	if s.RolloverCap != nil && *s.RolloverCap < 0 {
		return p, fieldErr("rollover_cap", "must not be negative")
	}
	// At most a year: the grace is added to times as a Duration, which a few hundred years of
	// seconds overflow (10^10 s made a subscription an hour overdue read as lapsed).
	if s.GraceSeconds < 0 || s.GraceSeconds > maxGraceSeconds {
		return p, fieldErr("grace_seconds", "must be between 0 and %d (a year)", maxGraceSeconds)
	}
	return p, nil
}

const maxGraceSeconds = 366 * 24 * 3600

// PutPlan stores a validated plan unless it is unchanged.
func PutPlan(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, p events.Plan, now time.Time) (int, error) {
	if have, ok := cat.Plan(sc, p.Key); ok && reflect.DeepEqual(normalizeRule(have), normalizeRule(p)) {
		return 0, nil
	}
	e := events.PlanDefined{Product: sc.Product, Env: sc.Env, Plan: p, At: now.UTC()}
	if _, err := Publish(ctx, js, cat, events.ConfigSubject(sc.Product, sc.Env, events.KindPlan, p.Key), events.TypePlanDefined, e); err != nil {
		return 0, err
	}
	return 1, nil
}
