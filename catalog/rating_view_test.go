package catalog

import (
	"encoding/json"
	"testing"

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
