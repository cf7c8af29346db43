package catalog

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// Over random sequences of meter and quota definitions — first definitions,
// redefinitions with only another limit or overrides, with another meter or period (anchors
// in UTC and in other offsets), quotas on "requests", two scopes — the view at every sequence
// has, for every meter, exactly the quotas (key, meter, period) the full catalog had at that
// sequence, and a second catalog folding the same stream (replay) logs the same rating
// sequences and answers the same views.
func TestQuotaViewsKeepWhatRatingReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	scopes := []events.Scope{{Product: "acme", Env: "test"}, {Product: "acme", Env: "live"}}
	meters := []string{"tokens", "calls", events.MeterRequests}
	east := time.FixedZone("", 2*3600)
	periods := []events.Period{
		{Unit: events.UnitDay},
		{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"},
		{Unit: events.UnitHour, Count: 2},
		{Unit: events.UnitHour, Mode: events.ModeFixed, Anchor: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Unit: events.UnitHour, Mode: events.ModeFixed, Anchor: time.Date(2026, 1, 1, 2, 0, 0, 0, east)},
	}
	type entry struct {
		typ  string
		data []byte
	}
	var stream []entry
	add := func(typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		stream = append(stream, entry{typ, b})
	}
	for _, s := range scopes {
		add(events.TypeMeterDefined, events.MeterDefined{Product: s.Product, Env: s.Env, Meter: events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "n"}})
		add(events.TypeMeterDefined, events.MeterDefined{Product: s.Product, Env: s.Env, Meter: events.Meter{Key: "calls", EventType: "llm", Aggregation: events.AggCount}})
	}
	for range 400 {
		s := scopes[rng.IntN(len(scopes))]
		if rng.IntN(20) == 0 {
			add(events.TypeAPIKeyCreated, events.APIKeyCreated{Hash: fmt.Sprint("h", rng.Int()), Product: s.Product, Env: s.Env})
			continue
		}
		q := events.Quota{Key: []string{"a", "b", "c"}[rng.IntN(3)], Meter: meters[rng.IntN(len(meters))],
			Limit: events.MustDecimal(fmt.Sprint(1 + rng.IntN(1000))), Period: periods[rng.IntN(len(periods))]}
		if rng.IntN(2) == 0 {
			q.Overrides = map[string]events.Decimal{fmt.Sprint("cust-", rng.IntN(5)): events.MustDecimal(fmt.Sprint(rng.IntN(9)))}
		}
		add(events.TypeQuotaDefined, events.QuotaDefined{Product: s.Product, Env: s.Env, Quota: q})
	}
	live, replay := New(), New()
	type rated struct {
		Key, Meter string
		Period     events.Period
	}
	ratedOf := func(qs []events.Quota) []rated {
		var out []rated
		for _, q := range qs {
			out = append(out, rated{q.Key, q.Meter, q.Period}) // the anchor's zone too: quota uses carry it
		}
		return out
	}
	for i, e := range stream {
		seq := uint64(i + 1)
		require.NoError(t, live.Apply(seq, e.typ, e.data))
		require.NoError(t, replay.Apply(seq, e.typ, e.data))
		require.Equal(t, live.RatingSeq(), replay.RatingSeq(), "seq %d", seq)
		v, err := live.RatingView(seq)
		require.NoError(t, err)
		rv, err := replay.RatingView(seq)
		require.NoError(t, err)
		for _, s := range scopes {
			for _, m := range meters {
				want := ratedOf(live.QuotasForMeter(s, m))
				require.Equal(t, want, ratedOf(v.QuotasForMeter(s, m)), "seq %d %v %s", seq, s, m)
				require.Equal(t, want, ratedOf(rv.QuotasForMeter(s, m)), "seq %d %v %s (replay)", seq, s, m)
			}
		}
	}
}
