package rating

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A rule version with another period counts its own windows. v1 is daily, v2 monthly from the
// 10th: the month began before the daily windows kept, and every v2 event was unrated
// too_late (windows were found by start alone and the oldest start dropped), or v2 priced on
// v1's window for the 1st. The month's window now starts from v2's first event, and is kept
// because it ends after the days.
func TestVersionWithAnotherPeriodCountsItsOwnWindows(t *testing.T) {
	day := &events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	change := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	cfg := config(events.AggSum,
		events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: day, EffectiveFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: mth, EffectiveFrom: change},
	)
	for _, before := range [][]int{{6, 7, 8, 9}, {1, 5}} {
		st := NewState()
		for _, d := range before {
			amounts(t, st, cfg, usage(fmt.Sprint("d", d), "c1", time.Date(2026, 3, d, 12, 0, 0, 0, time.UTC), tokens("150")))
		}
		for i := 0; i < 3; i++ {
			o, err := st.Rate(st.Seq+1, sc, usage(fmt.Sprint("n", i), "c1", change.Add(time.Duration(i+1)*time.Hour), tokens("10")), cfg)
			require.NoError(t, err)
			require.Nil(t, o.Unrated, "days %v, event %d under v2: %+v", before, i, o.Unrated)
			require.Len(t, o.Debits, 1)
			assert.Equal(t, fmt.Sprint(10*(i+1)), o.Debits[0].PeriodQuantity.String(), "days %v, event %d: the month's quantity under v2", before, i)
		}
	}
}

// A version priced per event (tier scope event) still counts in its period's quantity: a later
// period-scope version prices on all of the period's use (v1 150, v2 100, then v3's 10 is at
// 260, not 160).
func TestEventScopeVersionCountsInThePeriod(t *testing.T) {
	d := func(day int) time.Time { return time.Date(2026, 3, day, 12, 0, 0, 0, time.UTC) }
	cfg := config(events.AggSum,
		events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: mth, EffectiveFrom: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, TierScope: events.TierScopeEvent, EffectiveFrom: d(10)},
		events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: mth, EffectiveFrom: d(20)},
	)
	cfg.rules["tokens"][0].Versions[1].Period = nil
	st := NewState()
	amounts(t, st, cfg, usage("a", "c1", d(5), tokens("150")), usage("b", "c1", d(15), tokens("100")))
	o, err := st.Rate(st.Seq+1, sc, usage("c", "c1", d(25), tokens("10")), cfg)
	require.NoError(t, err)
	require.Len(t, o.Debits, 1)
	assert.Equal(t, "260", o.Debits[0].PeriodQuantity.String())
}

// A latest meter's period value is the latest by event time (then stream order), as analytics
// has it: the bill does not depend on the order events arrive in. An older value arriving late
// changes nothing — also after a snapshot, which keeps the value's event time.
func TestLatestIsByEventTime(t *testing.T) {
	cfg := config(events.AggLatest, events.Rule{Model: events.ModelPerUnit, Price: decp("1")})
	sum := func(cs []events.Credits) (s events.Credits) {
		for _, c := range cs {
			s += c
		}
		return s
	}
	inOrder := amounts(t, NewState(), cfg, usage("old", "c", t0, tokens("10")), usage("new", "c", t0.Add(time.Hour), tokens("100")))
	st := NewState()
	first := amounts(t, st, cfg, usage("new", "c", t0.Add(time.Hour), tokens("100")))
	b, err := json.Marshal(st)
	require.NoError(t, err)
	restored := NewState()
	require.NoError(t, json.Unmarshal(b, restored))
	late := amounts(t, restored, cfg, usage("old", "c", t0, tokens("10")))
	assert.Equal(t, sum(inOrder), sum(first)+sum(late), "in order %v, late %v then %v", inOrder, first, late)
	assert.Equal(t, events.Credits(0), sum(late), "the older value arriving late changes nothing")
}

// A period window that starts before year 1 (seven-year periods counted from 1970, an event in
// year 2) is unrated out_of_range: its debit's period_start could not be written, and the
// partition's worker failed on that entry for ever.
func TestWindowBeforeYearOneIsUnrated(t *testing.T) {
	p := &events.Period{Unit: events.UnitYear, Count: 7, Mode: events.ModeCalendar, TimeZone: "UTC"}
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: p, EffectiveFrom: time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)})
	o, err := NewState().Rate(1, sc, usage("y2", "c1", time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), tokens("5")), cfg)
	require.NoError(t, err)
	require.Empty(t, o.Debits)
	require.NotNil(t, o.Unrated)
	assert.Equal(t, []string{ReasonOutOfRange}, o.Reasons)
	_, err = events.UsageRated{ID: "rtd_x", Customer: "c1", FirstSeq: 1, LastSeq: 1, Unrated: []events.UsageUnrated{*o.Unrated}}.AppendJSON(nil)
	assert.NoError(t, err, "the entry can be written")
	st := NewState()
	_, err = st.Rate(1, sc, usage("y2", "c1", time.Date(2, 1, 1, 0, 0, 0, 0, time.UTC), tokens("5")), cfg)
	require.NoError(t, err)
	_, err = json.Marshal(st)
	assert.NoError(t, err, "and so can the state: the window is not kept")
}

// A snapshot of format 1 kept no window ends. Restored, a window counts by its start until an
// event gives it its end: taken as ending first, the newer days were forgotten before the
// older one a late event had touched, and later late events found their days empty (priced
// from 10 again, where the live state had 160).
func TestFormatOneWindowsAreForgottenOldestFirst(t *testing.T) {
	day := &events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: day})
	d := func(n, h int) time.Time { return time.Date(2026, 3, n, h, 0, 0, 0, time.UTC) }
	run := func(st *State, id string, at time.Time) string {
		o, err := st.Rate(st.Seq+1, sc, usage(id, "c1", at, tokens("10")), cfg)
		require.NoError(t, err)
		require.Nil(t, o.Unrated)
		require.Len(t, o.Debits, 1)
		return o.Debits[0].PeriodQuantity.String()
	}
	live := NewState()
	for i := 1; i <= 3; i++ {
		for j := 0; j < 15; j++ {
			run(live, fmt.Sprintf("d%d-%d", i, j), d(i, 10))
		}
	}
	b, err := json.Marshal(live)
	require.NoError(t, err)
	var snap snapshot
	require.NoError(t, json.Unmarshal(b, &snap))
	snap.Format, snap.ConfigSeq = 1, nil
	for i := range snap.Accs {
		for j := range snap.Accs[i].Windows {
			snap.Accs[i].Windows[j].End = nil
		}
	}
	b1, err := json.Marshal(snap)
	require.NoError(t, err)
	restored := NewState()
	require.NoError(t, json.Unmarshal(b1, restored))
	for name, st := range map[string]*State{"live": live, "restored": restored} {
		assert.Equal(t, "160", run(st, "late1", d(1, 20)), name)
		run(st, "d4", d(4, 10))
		assert.Equal(t, "160", run(st, "late2", d(2, 20)), name)
		assert.Equal(t, "160", run(st, "late3", d(3, 20)), name)
	}
}

// A rule stored with a period longer than the per-unit limits new periods have (200 years: the
// limit is now 100) keeps its period: rejected at rating, it was priced on calendar months.
func TestStoredRuleKeepsItsLongPeriod(t *testing.T) {
	long := &events.Period{Unit: events.UnitYear, Count: 200, Mode: events.ModeCalendar, TimeZone: "UTC"}
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers, Period: long, EffectiveFrom: t0.Add(-24 * time.Hour)})
	st := NewState()
	_, err := st.Rate(1, sc, usage("a", "c1", t0, tokens("10")), cfg)
	require.NoError(t, err)
	o, err := st.Rate(2, sc, usage("b", "c1", t0.AddDate(0, 2, 0), tokens("10")), cfg)
	require.NoError(t, err)
	require.Len(t, o.Debits, 1)
	assert.Equal(t, "20", o.Debits[0].PeriodQuantity.String())
}
