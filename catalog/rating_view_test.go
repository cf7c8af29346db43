package catalog

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A rating view is the meters (and rules and quotas) as they stood at a config sequence, and
// stays so when the catalog moves on.
func TestRatingViewIsTheConfigurationAtASequence(t *testing.T) {
	c := New()
	sc := events.Scope{Product: "acme", Env: "test"}
	apply := func(seq uint64, typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, c.Apply(seq, typ, b))
	}
	apply(1, events.TypeMeterDefined, events.MeterDefined{Product: "acme", Env: "test", Meter: events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"}})
	apply(2, events.TypeAPIKeyCreated, events.APIKeyCreated{Hash: "h", Product: "acme", Env: "test"})
	assert.EqualValues(t, 1, c.RatingSeq(), "an API key is nothing rating reads")
	v1, err := c.RatingView(2)
	require.NoError(t, err)
	again, err := c.RatingView(1)
	require.NoError(t, err)
	assert.Same(t, v1, again, "one view for the sequences between two rating events, made once")
	apply(3, events.TypeMeterDefined, events.MeterDefined{Product: "acme", Env: "test", Meter: events.Meter{Key: "tokens", EventType: "chat", Aggregation: events.AggSum, ValueProperty: "tokens"}})
	assert.EqualValues(t, 3, c.RatingSeq())
	assert.Len(t, v1.MetersFor(sc, "llm"), 1, "the view keeps the meter as it was")
	assert.Empty(t, v1.MetersFor(sc, "chat"))
	v3, err := c.RatingView(3)
	require.NoError(t, err)
	assert.Empty(t, v3.MetersFor(sc, "llm"))
	assert.Len(t, v3.MetersFor(sc, "chat"), 1)
	_, err = c.RatingView(4)
	assert.Error(t, err, "a sequence the catalog has not reached")
}

// A rating config event the catalog cannot apply (the follower logs it and goes on) is not in
// the views: kept, every view folded past it failed, and rating stopped for good.
func TestRatingViewLeavesOutWhatDidNotApply(t *testing.T) {
	c := New()
	m, err := json.Marshal(events.MeterDefined{Product: "acme", Env: "test", Meter: events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"}})
	require.NoError(t, err)
	require.NoError(t, c.Apply(1, events.TypeMeterDefined, m))
	bad := []byte(`{"product":"acme","env":"test","rule":{"key":"other","meter":"tokens","version":1,"model":"per_unit","price":"not-a-number"}}`)
	require.Error(t, c.Apply(2, events.TypeRuleVersioned, bad))
	assert.EqualValues(t, 1, c.RatingSeq())
	v, err := c.RatingView(2)
	require.NoError(t, err)
	assert.Len(t, v.MetersFor(events.Scope{Product: "acme", Env: "test"}, "llm"), 1)
}

// A rating view answers what rating asks at every event (meters by type, rules and quotas by
// meter) from maps made once, as the catalog answered at its sequence, and refuses changes.
func TestARatingViewAnswersAsTheCatalogDid(t *testing.T) {
	c := New()
	seq := uint64(0)
	apply := func(typ string, v any) {
		seq++
		b, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, c.Apply(seq, typ, b))
	}
	scopes := []events.Scope{{Product: "acme", Env: "test"}, {Product: "acme", Env: "live"}}
	for _, sc := range scopes {
		for _, m := range []events.Meter{
			{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"},
			{Key: "calls", EventType: "llm", Aggregation: events.AggCount},
			{Key: "seats", EventType: "seat", Aggregation: events.AggMax, ValueProperty: "n"},
		} {
			apply(events.TypeMeterDefined, events.MeterDefined{Product: sc.Product, Env: sc.Env, Meter: m})
		}
		for _, r := range []events.Rule{
			{Key: "z-price", Meter: "tokens", Version: 1, Model: events.ModelPerUnit, Price: ptr(events.MustDecimal("1"))},
			{Key: "a-fee", Meter: "tokens", Version: 1, Model: events.ModelFlat, Price: ptr(events.MustDecimal("2"))},
			{Key: "z-price", Meter: "tokens", Version: 2, Model: events.ModelPerUnit, Price: ptr(events.MustDecimal("3")), EffectiveFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		} {
			apply(events.TypeRuleVersioned, events.RuleVersioned{Product: sc.Product, Env: sc.Env, Rule: r})
		}
		for _, q := range []events.Quota{
			{Key: "tq-z", Meter: "tokens", Limit: events.MustDecimal("10"), Period: events.Period{Unit: events.UnitDay}},
			{Key: "tq-a", Meter: "tokens", Limit: events.MustDecimal("20"), Period: events.Period{Unit: events.UnitHour}, Overrides: map[string]events.Decimal{"c1": events.MustDecimal("5")}},
			{Key: "cq", Meter: "calls", Limit: events.MustDecimal("30"), Period: events.Period{Unit: events.UnitMonth}},
		} {
			apply(events.TypeQuotaDefined, events.QuotaDefined{Product: sc.Product, Env: sc.Env, Quota: q})
		}
	}
	v, err := c.RatingView(seq)
	require.NoError(t, err)
	orNil := func(n int) bool { return n == 0 }
	for _, sc := range append(scopes, events.Scope{Product: "other", Env: "test"}) {
		for _, typ := range []string{"llm", "seat", "none"} {
			assert.Equal(t, c.MetersFor(sc, typ), v.MetersFor(sc, typ), "%v %s", sc, typ)
		}
		for _, meter := range []string{"tokens", "calls", "seats", "none"} {
			live, view := c.RulesForMeter(sc, meter), v.RulesForMeter(sc, meter)
			if !orNil(len(live)) || !orNil(len(view)) {
				assert.Equal(t, live, view, "rules %v %s", sc, meter)
			}
			lq, vq := c.QuotasForMeter(sc, meter), v.QuotasForMeter(sc, meter)
			if !orNil(len(lq)) || !orNil(len(vq)) {
				assert.Equal(t, lq, vq, "quotas %v %s", sc, meter)
			}
		}
	}
	assert.Len(t, v.RulesForMeter(scopes[0], "tokens"), 2)
	assert.Len(t, v.QuotasForMeter(scopes[0], "tokens"), 2)
	b, err := json.Marshal(events.MeterDefined{Product: "acme", Env: "test", Meter: events.Meter{Key: "x", EventType: "x", Aggregation: events.AggCount}})
	require.NoError(t, err)
	assert.Error(t, v.Apply(seq+1, events.TypeMeterDefined, b), "a view does not change")
	assert.Empty(t, v.MetersFor(scopes[0], "x"))
}

func ptr[T any](v T) *T { return &v }

// A quota redefined with only another limit or other per-customer overrides is nothing rating
// reads: no new rating sequence, the same view, and no copy of the overrides for views to fold
// again. A new key, meter or period is: rating counts other quotas, or in other windows.
func TestQuotaLimitsAndOverridesMakeNoRatingView(t *testing.T) {
	c := New()
	sc := events.Scope{Product: "acme", Env: "test"}
	seq := uint64(0)
	apply := func(typ string, v any) uint64 {
		seq++
		b, err := json.Marshal(v)
		require.NoError(t, err)
		require.NoError(t, c.Apply(seq, typ, b))
		return seq
	}
	quota := func(q events.Quota) uint64 {
		return apply(events.TypeQuotaDefined, events.QuotaDefined{Product: sc.Product, Env: sc.Env, Quota: q})
	}
	apply(events.TypeMeterDefined, events.MeterDefined{Product: sc.Product, Env: sc.Env, Meter: events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"}})
	apply(events.TypeMeterDefined, events.MeterDefined{Product: sc.Product, Env: sc.Env, Meter: events.Meter{Key: "calls", EventType: "llm", Aggregation: events.AggCount}})
	day := events.Period{Unit: events.UnitDay}
	q := events.Quota{Key: "daily", Meter: "tokens", Limit: events.MustDecimal("100"), Period: day}
	defined := quota(q)
	assert.Equal(t, defined, c.RatingSeq(), "a new quota is read by rating")
	view, err := c.RatingView(defined)
	require.NoError(t, err)
	logged := len(c.ratingLog)

	for i := range 50 {
		q.Overrides = map[string]events.Decimal{}
		for j := range i + 1 {
			q.Overrides[fmt.Sprint("cust-", j)] = events.MustDecimal(fmt.Sprint(j))
		}
		q.Limit = events.MustDecimal(fmt.Sprint(100 + i))
		at := quota(q)
		require.Equal(t, defined, c.RatingSeq(), "override change %d", i)
		v, err := c.RatingView(at)
		require.NoError(t, err)
		require.Same(t, view, v, "override change %d", i)
	}
	assert.Equal(t, logged, len(c.ratingLog), "no override change is kept for views")
	assert.Equal(t, events.MustDecimal("149"), c.QuotasForMeter(sc, "tokens")[0].Limit, "the catalog has the limit in force")
	assert.Equal(t, []events.Quota{{Key: "daily", Meter: "tokens", Limit: events.MustDecimal("100"), Period: day, Scope: sc}},
		view.QuotasForMeter(sc, "tokens"), "the view has what rating reads of it")

	for _, change := range []events.Quota{
		{Key: "daily", Meter: "tokens", Limit: events.MustDecimal("1"), Period: events.Period{Unit: events.UnitHour}},
		{Key: "daily", Meter: "calls", Limit: events.MustDecimal("1"), Period: events.Period{Unit: events.UnitHour}},
		{Key: "daily", Meter: "calls", Limit: events.MustDecimal("1"), Period: events.Period{Unit: events.UnitHour, Mode: events.ModeFixed, Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}},
		{Key: "other", Meter: "calls", Limit: events.MustDecimal("1"), Period: day},
	} {
		at := quota(change)
		assert.Equal(t, at, c.RatingSeq(), "%+v", change)
		v, err := c.RatingView(at)
		require.NoError(t, err)
		assert.Contains(t, v.QuotasForMeter(sc, change.Meter), change.WithScope(sc))
	}
	assert.Empty(t, mustView(t, c, seq).QuotasForMeter(sc, "tokens"), "daily moved to calls")
}

func mustView(t *testing.T, c *Catalog, seq uint64) *Catalog {
	t.Helper()
	v, err := c.RatingView(seq)
	require.NoError(t, err)
	return v
}
