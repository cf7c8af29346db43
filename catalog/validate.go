package catalog

import (
	"fmt"
	"regexp"
	"slices"

	"github.com/allot-dev/allot/events"
)

// FieldError says which field of a configuration object is wrong and why.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

var objectKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$`)
var propertyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

// ValidateObjectKey checks the key of a meter, rule, quota, feature or plan.
func ValidateObjectKey(key string) *FieldError {
	if !objectKey.MatchString(key) {
		return fieldErr("key", "%q must match %s", key, objectKey)
	}
	return nil
}

// ValidateMeter checks a meter definition and returns it normalised.
func ValidateMeter(m events.Meter) (events.Meter, *FieldError) {
	if fe := ValidateObjectKey(m.Key); fe != nil {
		return m, fe
	}
	if m.EventType == "" || len(m.EventType) > 256 {
		return m, fieldErr("event_type", "event_type is required (at most 256 bytes)")
	}
	switch m.Aggregation {
	case events.AggCount:
		if m.ValueProperty != "" {
			return m, fieldErr("value_property", "count does not read a value; remove value_property")
		}
	case events.AggSum, events.AggMax, events.AggUniqueCount, events.AggLatest:
		if m.ValueProperty == "" {
			return m, fieldErr("value_property", "aggregation %q needs value_property", m.Aggregation)
		}
		if !propertyName.MatchString(m.ValueProperty) {
			return m, fieldErr("value_property", "%q is not a property name", m.ValueProperty)
		}
	case "":
		return m, fieldErr("aggregation", "aggregation is required: count, sum, max, unique_count or latest")
	default:
		return m, fieldErr("aggregation", "%q is not one of count, sum, max, unique_count, latest", m.Aggregation)
	}
	for k := range m.Filters {
		if !propertyName.MatchString(k) {
			return m, fieldErr("filters."+k, "%q is not a property name", k)
		}
	}
	seen := map[string]bool{}
	for i, g := range m.GroupBy {
		if !propertyName.MatchString(g) {
			return m, fieldErr(fmt.Sprintf("group_by[%d]", i), "%q is not a property name", g)
		}
		if seen[g] {
			return m, fieldErr(fmt.Sprintf("group_by[%d]", i), "%q is listed twice", g)
		}
		seen[g] = true
	}
	if len(m.Filters) == 0 {
		m.Filters = nil
	}
	if len(m.GroupBy) == 0 {
		m.GroupBy = nil
	} else {
		m.GroupBy = slices.Clone(m.GroupBy)
	}
	return m, nil
}

// ValidateKeyGrant checks a plaintext key and its binding before it is stored.
func ValidateKeyGrant(key, product, env string) *FieldError {
	if err := events.ValidateScope(product); err != nil {
		return fieldErr("product", "%v", err)
	}
	if err := events.ValidateScope(env); err != nil {
		return fieldErr("env", "%v", err)
	}
	kenv, ok := KeyEnv(key)
	if !ok {
		return fieldErr("key", "an API key looks like ak_<env>_<secret of at least 8 characters>, with no '_' in the env")
	}
	if kenv != env {
		return fieldErr("key", "the key's prefix names env %q but it is bound to env %q", kenv, env)
	}
	return nil
}
