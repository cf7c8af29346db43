package rating

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// fakeConfig is a fixed configuration (a real value, not a mock: rating reads only these two
// lookups, and the catalog's own tests cover how they are folded from the config stream).
type fakeConfig struct {
	meters []events.Meter
	rules  map[string][]events.RuleHistory
	quotas []events.Quota
}

func (c fakeConfig) MetersFor(_ events.Scope, typ string) []events.Meter {
	if !slices.ContainsFunc(c.meters, func(m events.Meter) bool { return m.EventType != typ }) {
		return c.meters // all of them: without a new slice, as a catalog view answers
	}
	var out []events.Meter
	for _, m := range c.meters {
		if m.EventType == typ {
			out = append(out, m)
		}
	}
	return out
}

func (c fakeConfig) RulesForMeter(_ events.Scope, meter string) []events.RuleHistory {
	return c.rules[meter]
}

func (c fakeConfig) QuotasForMeter(_ events.Scope, meter string) []events.Quota {
	var out []events.Quota
	for _, q := range c.quotas {
		if q.Meter == meter {
			out = append(out, q)
		}
	}
	return out
}

var (
	sc  = events.Scope{Product: "acme", Env: "live"}
	t0  = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)
	mth = &events.Period{Unit: events.UnitMonth, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
)

func usage(id, cust string, at time.Time, data map[string]any) events.Usage {
	return events.Usage{ID: id, Type: "llm", Customer: cust, Time: at, Data: data}
}

func tokens(n string) map[string]any { return map[string]any{"tokens": json.Number(n)} }

func config(agg string, versions ...events.Rule) fakeConfig {
	m := events.Meter{Key: "tokens", EventType: "llm", Aggregation: agg, ValueProperty: "tokens"}
	if agg == events.AggCount {
		m.ValueProperty = ""
	}
	for i := range versions {
		versions[i].Key, versions[i].Meter, versions[i].Version = "price", "tokens", i+1
		if versions[i].TierScope == "" {
			versions[i].TierScope = events.TierScopePeriod
		}
		if versions[i].Period == nil && versions[i].TierScope == events.TierScopePeriod {
			versions[i].Period = mth
		}
	}
	return fakeConfig{meters: []events.Meter{m}, rules: map[string][]events.RuleHistory{"tokens": {{Key: "price", Versions: versions}}}}
}

func amounts(t *testing.T, st *State, cfg fakeConfig, evs ...events.Usage) []events.Credits {
	t.Helper()
	var out []events.Credits
	for _, ev := range evs {
		o, err := st.Rate(st.Seq+1, sc, ev, cfg)
		require.NoError(t, err)
		for _, d := range o.Debits {
			out = append(out, d.Amount)
		}
	}
	return out
}

const cr = events.MicroPerCredit

func TestRatePeriodGraduatedTelescopes(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers})
	st := NewState()
	got := amounts(t, st, cfg,
		usage("a", "c1", t0, tokens("150")),
		usage("b", "c1", t0.Add(time.Hour), tokens("50")),
		usage("c", "c1", t0.Add(2*time.Hour), tokens("51")),
		usage("d", "c2", t0, tokens("250")), // another customer has its own quantity
	)
	assert.Equal(t, []events.Credits{125 * cr, 25 * cr, 5_100_000, 155 * cr}, got)
	// The next month starts from zero.
	got = amounts(t, st, cfg, usage("e", "c1", time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC), tokens("1")))
	assert.Equal(t, []events.Credits{1 * cr}, got)
}

func TestRateVolumeWritesCreditBacks(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelVolume, Tiers: exampleTiers})
	st := NewState()
	var kinds []string
	var sum events.Credits
	for i, q := range []string{"150", "50", "1", "49"} {
		o, err := st.Rate(uint64(i+1), sc, usage(q+"-"+string(rune('a'+i)), "c1", t0, tokens(q)), cfg)
		require.NoError(t, err)
		require.Len(t, o.Debits, 1)
		kinds = append(kinds, o.Debits[0].Kind)
		sum += o.Debits[0].Amount
		if i == 2 {
			assert.Equal(t, events.Credits(-79_900_000), o.Debits[0].Amount, "200 → 201 drops the total from 100 to 20.10")
		}
	}
	assert.Equal(t, []string{"debit", "debit", "credit_back", "debit"}, kinds)
	assert.Equal(t, events.Credits(25*cr), sum, "volume 250 = 25")
}

// TestRuleChangeMidPeriod: events before the new version's effective_from keep the old price,
// whatever order they arrive in, and rating them again from scratch with the final
// configuration gives the same debits.
func TestRuleChangeMidPeriod(t *testing.T) {
	change := t0.Add(24 * time.Hour)
	cfg := config(events.AggSum,
		events.Rule{Model: events.ModelPerUnit, Price: decp("1"), EffectiveFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		events.Rule{Model: events.ModelPerUnit, Price: decp("2"), EffectiveFrom: change},
	)
	evs := []events.Usage{
		usage("a", "c1", t0, tokens("10")),
		usage("b", "c1", change.Add(time.Minute), tokens("10")),
		usage("c", "c1", change.Add(-time.Nanosecond), tokens("10")), // late, before the change
		usage("d", "c1", change, tokens("10")),                       // exactly at it
	}
	run := func() []events.UsageDebited {
		st := NewState()
		var out []events.UsageDebited
		for i, ev := range evs {
			o, err := st.Rate(uint64(i+1), sc, ev, cfg)
			require.NoError(t, err)
			out = append(out, o.Debits...)
		}
		return out
	}
	live := run()
	require.Len(t, live, 4)
	var vs []int
	var amts []events.Credits
	for _, d := range live {
		vs, amts = append(vs, d.RuleVersion), append(amts, d.Amount)
	}
	assert.Equal(t, []int{1, 2, 1, 2}, vs)
	assert.Equal(t, []events.Credits{10 * cr, 20 * cr, 10 * cr, 20 * cr}, amts)
	assert.Equal(t, live, run(), "rating is deterministic")
	before := usage("z", "c1", time.Date(2025, 12, 31, 0, 0, 0, 0, time.UTC), tokens("1"))
	o, err := NewState().Rate(1, sc, before, cfg)
	require.NoError(t, err)
	assert.Empty(t, o.Debits)
	require.NotNil(t, o.Unrated, "before the first version an event is unrated, not dropped")
	assert.Equal(t, []string{ReasonNoRule}, o.Unrated.Reasons)
}

func TestRateAggregationsAndScopes(t *testing.T) {
	per := events.Rule{Model: events.ModelPerUnit, Price: decp("1")}
	tests := []struct {
		name string
		cfg  fakeConfig
		evs  []events.Usage
		want []events.Credits
	}{
		{"count", config(events.AggCount, per), []events.Usage{usage("a", "c", t0, nil), usage("b", "c", t0, nil)}, []events.Credits{cr, cr}},
		{"max charges only growth", config(events.AggMax, per), []events.Usage{usage("a", "c", t0, tokens("5")), usage("b", "c", t0, tokens("3")), usage("c", "c", t0, tokens("8"))}, []events.Credits{5 * cr, 0, 3 * cr}},
		{"latest follows the value", config(events.AggLatest, per), []events.Usage{usage("a", "c", t0, tokens("5")), usage("b", "c", t0, tokens("3"))}, []events.Credits{5 * cr, -2 * cr}},
		{"unique_count counts values once", config(events.AggUniqueCount, per), []events.Usage{usage("a", "c", t0, tokens("7")), usage("b", "c", t0, map[string]any{"tokens": "7"}), usage("c", "c", t0, tokens("8"))}, []events.Credits{cr, 0, cr}},
		{"event scope prices each event alone", config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, TierScope: events.TierScopeEvent}),
			[]events.Usage{usage("a", "c", t0, tokens("150")), usage("b", "c", t0, tokens("150"))}, []events.Credits{125 * cr, 125 * cr}},
		{"flat per event", config(events.AggSum, events.Rule{Model: events.ModelFlat, Price: decp("0.5")}), []events.Usage{usage("a", "c", t0, tokens("150")), usage("b", "c", t0, tokens("1"))}, []events.Credits{cr / 2, cr / 2}},
		{"packages telescope", config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("2"), PackageSize: decp("100")}),
			[]events.Usage{usage("a", "c", t0, tokens("1")), usage("b", "c", t0, tokens("99")), usage("c", "c", t0, tokens("1"))}, []events.Credits{2 * cr, 0, 2 * cr}},
		{"first_use anchors per customer", config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: &events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeFirstUse, TimeZone: "UTC"}}),
			[]events.Usage{usage("a", "c", t0, tokens("100")), usage("b", "c", t0.Add(23*time.Hour), tokens("100")), usage("c", "c", t0.Add(24*time.Hour), tokens("100"))}, []events.Credits{100 * cr, 50 * cr, 100 * cr}},
		{"a late event finds its window", config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers}),
			[]events.Usage{usage("a", "c", t0, tokens("100")), usage("b", "c", t0.AddDate(0, 1, 0), tokens("100")), usage("c", "c", t0, tokens("100"))}, []events.Credits{100 * cr, 100 * cr, 50 * cr}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, amounts(t, NewState(), tt.cfg, tt.evs...))
		})
	}
}

func TestRateUnratedAndUnmetered(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	st := NewState()
	o, err := st.Rate(1, sc, usage("a", "c", t0, map[string]any{"tokens": "many"}), cfg)
	require.NoError(t, err)
	require.NotNil(t, o.Unrated)
	assert.Equal(t, []string{ReasonBadValue}, o.Unrated.Reasons)
	assert.Equal(t, uint64(1), o.Unrated.UsageSeq)
	o, err = st.Rate(2, sc, events.Usage{ID: "b", Type: "other", Customer: "c", Time: t0}, cfg)
	require.NoError(t, err)
	assert.False(t, o.Metered)
	assert.Nil(t, o.Unrated)
	_, err = st.Rate(2, sc, usage("c", "c", t0, tokens("1")), cfg)
	require.ErrorIs(t, err, ErrApplied)
	huge := config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1000000")})
	o, err = NewState().Rate(1, sc, usage("d", "c", t0, tokens("100000000000")), huge)
	require.NoError(t, err)
	require.NotNil(t, o.Unrated)
	assert.Equal(t, []string{ReasonOverflow}, o.Unrated.Reasons)
}

func TestDebitIDsAreDerived(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	a, _ := NewState().Rate(1, sc, usage("evt-1", "c", t0, tokens("1")), cfg)
	b, _ := NewState().Rate(7, sc, usage("evt-1", "c", t0, tokens("1")), cfg)
	assert.Equal(t, a.Debits[0].ID, b.Debits[0].ID, "a redelivered event gets the same debit id")
	c, _ := NewState().Rate(1, events.Scope{Product: "other", Env: "live"}, usage("evt-1", "c", t0, tokens("1")), cfg)
	assert.NotEqual(t, a.Debits[0].ID, c.Debits[0].ID)
}

func TestSnapshotRoundTrip(t *testing.T) {
	cfg := config(events.AggUniqueCount, events.Rule{Model: events.ModelPerUnit, Price: decp("1"), Period: &events.Period{Unit: events.UnitWeek, Count: 1, Mode: events.ModeFirstUse, TimeZone: "UTC"}})
	st := NewState()
	var evs []events.Usage
	for i := 0; i < 30; i++ {
		evs = append(evs, usage("e"+string(rune('a'+i)), []string{"x", "y", "z"}[i%3], t0.Add(time.Duration(i)*13*time.Hour), tokens(string(rune('0'+i%7)))))
	}
	amounts(t, st, cfg, evs[:20]...)
	b1, err := json.Marshal(st)
	require.NoError(t, err)
	restored := NewState()
	require.NoError(t, json.Unmarshal(b1, restored))
	b2, err := json.Marshal(restored)
	require.NoError(t, err)
	assert.Equal(t, string(b1), string(b2), "encode → decode → encode is the identity")
	// Continuing from the snapshot gives what continuing in memory gives.
	assert.Equal(t, amounts(t, st, cfg, evs[20:]...), amounts(t, restored, cfg, evs[20:]...))
}

func TestRateEmitsQuotaUse(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	cfg.quotas = []events.Quota{{Key: "daily", Meter: "tokens", Limit: dec("100"), Period: day}, {Key: "other", Meter: "calls", Limit: dec("1"), Period: day}}
	o, err := NewState().Rate(5, sc, usage("a", "c", t0, tokens("12.5")), cfg)
	require.NoError(t, err)
	require.Len(t, o.Quotas, 1)
	assert.Equal(t, events.QuotaUse{Quota: "daily", Amount: dec("12.5"), Period: day, At: t0, UsageSeq: 5}, o.Quotas[0])
}

// The state keeps a window's last price and the last window it found, for speed; neither is
// saved. Rating a random stream with one continuing state must give exactly what rating it
// with a state saved and restored before every event (which starts each event with no cache)
// gives: across rule versions, window changes in a Berlin day period, late events and
// unique counts.
func TestRatingCachesChangeNothing(t *testing.T) {
	berlinDay := &events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "Europe/Berlin"}
	for _, agg := range []string{events.AggSum, events.AggMax, events.AggUniqueCount, events.AggCount} {
		v1 := events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: berlinDay}
		v2 := events.Rule{Model: events.ModelVolume, Tiers: exampleTiers, Period: berlinDay, EffectiveFrom: t0.Add(30 * time.Hour)}
		v3 := events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: mth, EffectiveFrom: t0.Add(60 * time.Hour)}
		cfg := config(agg, v1, v2, v3)
		live, restored := NewState(), NewState()
		rng := rand.New(rand.NewPCG(7, uint64(len(agg))))
		at := t0
		for i := 0; i < 1500; i++ {
			at = at.Add(time.Duration(rng.IntN(120)) * time.Second)
			when := at
			if rng.IntN(20) == 0 {
				when = at.Add(-time.Duration(rng.IntN(48)) * time.Hour) // late
			}
			data := map[string]any{"tokens": json.Number(strconv.Itoa(rng.IntN(5000)))}
			ev := usage(fmt.Sprint("ev-", i), fmt.Sprint("cust-", rng.IntN(3)), when, data)
			want, err := live.Rate(live.Seq+1, sc, ev, cfg)
			require.NoError(t, err)
			b, err := json.Marshal(restored)
			require.NoError(t, err)
			restored = NewState()
			require.NoError(t, json.Unmarshal(b, restored))
			got, err := restored.Rate(restored.Seq+1, sc, ev, cfg)
			require.NoError(t, err)
			require.Equal(t, want, got, "%s event %d", agg, i)
		}
	}
}

// rateTelescopes rates n events of random decimal quantities for one customer in one period
// through State.Rate — restoring the state from its snapshot at random points, as a restart
// does — and checks that the debits written sum to the rule's price of the period total,
// rounded once.
func rateTelescopes(t *testing.T, rng *rand.Rand, rule events.Rule, n int) {
	t.Helper()
	cfg := config(events.AggSum, rule)
	st := NewState()
	q := events.Decimal{}
	var sum events.Credits
	for i := 0; i < n; i++ {
		x := strconv.FormatUint(rng.Uint64N(300), 10) + "." + strconv.FormatUint(rng.Uint64N(1e9), 10)
		q = q.Add(events.MustDecimal(x))
		o, err := st.Rate(st.Seq+1, sc, usage(fmt.Sprint("e", i), "c1", t0.Add(time.Duration(i)*time.Minute), tokens(x)), cfg)
		require.NoError(t, err)
		require.Len(t, o.Debits, 1)
		sum += o.Debits[0].Amount
		if rng.IntN(4) == 0 {
			b, err := json.Marshal(st)
			require.NoError(t, err)
			st = NewState()
			require.NoError(t, json.Unmarshal(b, st))
		}
	}
	want, ok := Round(Cost(cfg.rules["tokens"][0].Versions[0], q))
	require.True(t, ok)
	if sum != want {
		t.Fatalf("%s: %d events summing to %s were debited %d µcredits, the rounded price of the total is %d", rule.Model, n, q, sum, want)
	}
}

// TestPeriodDebitsTelescope: for random event sequences, the per-event graduated (and volume)
// debits State.Rate writes for a period sum to the rounded price of the period total.
func TestPeriodDebitsTelescope(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, model := range []string{events.ModelGraduated, events.ModelVolume} {
		rule := events.Rule{Model: model, Tiers: []events.Tier{
			{UpTo: decp("10.5"), UnitPrice: dec("0.3333333"), FlatFee: decp("0.0000007")},
			{UpTo: decp("1000"), UnitPrice: dec("0.1234567")},
			{UnitPrice: dec("0.0000013")},
		}}
		for run := 0; run < 100; run++ {
			rateTelescopes(t, rng, rule, 1+rng.IntN(50))
		}
	}
}

func FuzzGraduatedTelescopes(f *testing.F) {
	f.Add(uint64(1), uint8(10))
	f.Add(uint64(7), uint8(200))
	f.Fuzz(func(t *testing.T, seed uint64, n uint8) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		rateTelescopes(t, rng, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers}, int(n))
	})
}

// An event older than the windows rating keeps is never priced as if its period had been
// empty: with a first-tier fee that charged the fee again (11 instead of 1 here). Linear
// prices need no window and are still exact.
func TestRateEventOlderThanTheKeptWindows(t *testing.T) {
	hour := &events.Period{Unit: events.UnitHour, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	fee := events.Rule{Model: events.ModelGraduated, Period: hour, Tiers: []events.Tier{{UpTo: decp("100"), UnitPrice: dec("1"), FlatFee: decp("10")}, {UnitPrice: dec("0.5")}}}
	linear := events.Rule{Model: events.ModelPerUnit, Period: hour, Price: decp("2")}
	packaged := events.Rule{Model: events.ModelPerUnit, Period: hour, Price: decp("2"), PackageSize: decp("10")}
	for _, tt := range []struct {
		name   string
		rule   events.Rule
		late   []events.Credits
		reason string
	}{
		{"graduated", fee, nil, ReasonTooLate},
		{"per unit", linear, []events.Credits{2 * cr}, ""},
		{"per unit in packages", packaged, nil, ReasonTooLate},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config(events.AggSum, tt.rule)
			st := NewState()
			for h := 0; h < 5; h++ {
				amounts(t, st, cfg, usage(fmt.Sprint("e", h), "c1", t0.Add(time.Duration(h)*time.Hour), tokens("1")))
			}
			// Three hours kept (2, 3, 4): hour 0 is gone, hour 2 is not.
			o, err := st.Rate(st.Seq+1, sc, usage("late0", "c1", t0.Add(time.Minute), tokens("1")), cfg)
			require.NoError(t, err)
			var got []events.Credits
			for _, d := range o.Debits {
				got = append(got, d.Amount)
			}
			assert.Equal(t, tt.late, got)
			if tt.reason != "" {
				require.NotNil(t, o.Unrated)
				assert.Equal(t, []string{tt.reason}, o.Unrated.Reasons)
			} else {
				assert.Nil(t, o.Unrated)
			}
			o, err = st.Rate(st.Seq+1, sc, usage("late2", "c1", t0.Add(2*time.Hour+time.Minute), tokens("1")), cfg)
			require.NoError(t, err)
			require.Len(t, o.Debits, 1, "an event in a kept window is priced")
		})
	}
}

// A negative (or zero) quantity of a sum meter counts nothing against a quota: it took a
// window's use below zero, and the window then admitted past its limit.
func TestNegativeSumCountsNothingAgainstAQuota(t *testing.T) {
	cfg := fakeConfig{
		meters: []events.Meter{{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"}},
		quotas: []events.Quota{{Key: "tok", Meter: "tokens", Limit: events.MustDecimal("1000"), Period: *mth}},
	}
	for i, q := range []string{"-5000", "0"} {
		out, err := NewState().Rate(uint64(i+1), sc, usage(fmt.Sprint("e", i), "c", t0, tokens(q)), cfg)
		require.NoError(t, err)
		assert.Empty(t, out.Quotas, "tokens %s", q)
	}
	out, err := NewState().Rate(3, sc, usage("e3", "c", t0, tokens("7")), cfg)
	require.NoError(t, err)
	require.Len(t, out.Quotas, 1)
	assert.Equal(t, "7", out.Quotas[0].Amount.String())
}

// A quantity with more than 40 digits on either side of the point ("1e-130": 6 characters of
// input, 132 written out) is unrated as a bad value, and the state snapshots and loads again:
// such quantities were rated, and their window totals made the rating snapshot unreadable
// (every restart of the partition failed) and their entries undecodable.
func TestQuantitiesBeyondFortyDigitsAreBadValues(t *testing.T) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers})
	st := NewState()
	for i, q := range []string{"1e-130", "0." + strings.Repeat("1", 124), "1e41"} {
		out, err := st.Rate(uint64(i+1), sc, usage(fmt.Sprint("e", i), "c1", t0, tokens(q)), cfg)
		require.NoError(t, err)
		assert.Empty(t, out.Debits, q)
		assert.Contains(t, out.Reasons, ReasonBadValue, q)
	}
	// Forty digits after the point, then a whole number: the period's total has both.
	cfg = config(events.AggSum, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	for i, q := range []string{"0." + strings.Repeat("1", 40), "1000"} {
		out, err := st.Rate(uint64(10+i), sc, usage(fmt.Sprint("f", i), "c1", t0, tokens(q)), cfg)
		require.NoError(t, err)
		require.Len(t, out.Debits, 1, q)
		entry := events.UsageRated{ID: "rtd_x", Customer: "c1", FirstSeq: 1, LastSeq: 1, Debits: out.Debits}
		data, err := entry.AppendJSON(nil)
		require.NoError(t, err)
		_, err = events.DecodeUsageRated(data)
		require.NoError(t, err)
	}
	b, err := json.Marshal(st)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, NewState()), "a snapshot rating wrote loads again")
}

// A state that reuses its memory (Reuse, as Rebuild's do) gives for every message exactly
// what one that does not gives: nothing of a message's data, debits or quota uses is left in
// the next one's. Events mix two meters, two rules on one, quotas on both, bad values and
// other types, so the outputs' lengths vary from message to message.
func TestReuseRatesAsWithout(t *testing.T) {
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	cfg := fakeConfig{
		meters: []events.Meter{
			{Key: "calls", EventType: "llm", Aggregation: events.AggCount},
			{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens", Filters: map[string]string{"model": "small"}},
		},
		rules: map[string][]events.RuleHistory{
			"calls": {{Key: "per-call", Versions: []events.Rule{{Key: "per-call", Meter: "calls", Version: 1, Model: events.ModelFlat, Price: decp("0.5"), TierScope: events.TierScopeEvent}}}},
			"tokens": {
				{Key: "a-tiers", Versions: []events.Rule{{Key: "a-tiers", Meter: "tokens", Version: 1, Model: events.ModelGraduated, Tiers: exampleTiers, TierScope: events.TierScopePeriod, Period: mth}}},
				{Key: "b-unit", Versions: []events.Rule{{Key: "b-unit", Meter: "tokens", Version: 1, Model: events.ModelPerUnit, Price: decp("0.01"), TierScope: events.TierScopePeriod, Period: &day}}},
			},
		},
		quotas: []events.Quota{{Key: "calls-daily", Meter: "calls", Limit: dec("100"), Period: day}, {Key: "tokens-daily", Meter: "tokens", Limit: dec("1000"), Period: day}},
	}
	reusing, fresh := NewState(), NewState()
	reusing.NoIDs, reusing.Reuse, fresh.NoIDs = true, true, true
	rng := rand.New(rand.NewPCG(3, 4))
	var debits, quotas, unrated int
	for i := range 2000 {
		data := map[string]any{"model": []string{"big", "small", "tiny"}[rng.IntN(3)], "region": "eu"}
		switch rng.IntN(6) {
		case 0: // no value: unrated for tokens, counted for calls
		case 1:
			data["tokens"] = "many" // a bad value
		default:
			data["tokens"] = json.Number(strconv.Itoa(rng.IntN(400) - 20))
		}
		typ := "llm"
		if rng.IntN(8) == 0 {
			typ = "other"
		}
		ev := events.Usage{ID: fmt.Sprint("ev-", i), Type: typ, Customer: fmt.Sprint("cust-", rng.IntN(4)), Time: t0.Add(time.Duration(i) * time.Minute), Data: data}
		body, err := ev.Encode()
		require.NoError(t, err)
		subject := "allot.usage.0." + sc.Product + "." + sc.Env + "." + ev.Customer
		want, err := fresh.RateMessage(uint64(i+1), subject, body, t0, cfg)
		require.NoError(t, err)
		got, err := reusing.RateMessage(uint64(i+1), subject, body, t0, cfg)
		require.NoError(t, err)
		require.Equal(t, want, got, "message %d", i)
		debits, quotas = debits+len(got.Out.Debits), quotas+len(got.Out.Quotas)
		if got.Out.Unrated != nil {
			unrated++
		}
	}
	// The mix did what it is for.
	assert.Greater(t, debits, 2000)
	assert.Greater(t, quotas, 2000)
	assert.Greater(t, unrated, 100)
	a, err := json.Marshal(fresh)
	require.NoError(t, err)
	b, err := json.Marshal(reusing)
	require.NoError(t, err)
	assert.JSONEq(t, string(a), string(b))
}
