package catalog

import (
	"encoding/json"
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
