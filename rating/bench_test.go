package rating

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/allot-dev/allot/events"
)

// BenchmarkRate prices events the way `allot bench pipeline` sends them: a sum meter over
// "tokens", a three-tier graduated rule per calendar month, 1,000 customers, one event a
// millisecond — rating's CPU per event without the bus.
func BenchmarkRate(b *testing.B) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, EffectiveFrom: t0.AddDate(-1, 0, 0), Tiers: []events.Tier{
		{UpTo: decp("10000"), UnitPrice: events.MustDecimal("0.001")},
		{UpTo: decp("100000"), UnitPrice: events.MustDecimal("0.0005")},
		{UnitPrice: events.MustDecimal("0.0001")},
	}})
	evs := make([]events.Usage, 10_000)
	for i := range evs {
		evs[i] = usage("e"+strconv.Itoa(i), "cust-"+strconv.Itoa(i%1000), t0.Add(time.Duration(i)*time.Millisecond),
			map[string]any{"tokens": json.Number(strconv.Itoa(100 + i%900)), "model": "small"})
	}
	st := NewState()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ev := evs[i%len(evs)]
		ev.Time = ev.Time.Add(time.Duration(i/len(evs)) * 10 * time.Second)
		if _, err := st.Rate(uint64(i+1), sc, ev, cfg); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRebuildMessage is one usage message of `allot bench replay`'s stream folded as
// Rebuild folds it (RateMessage on a state that keeps no ids): the body decoded and rated.
func BenchmarkRebuildMessage(b *testing.B) {
	cfg := config(events.AggSum, events.Rule{Model: events.ModelGraduated, EffectiveFrom: t0.AddDate(-1, 0, 0), Tiers: []events.Tier{
		{UpTo: decp("10000"), UnitPrice: events.MustDecimal("0.001")},
		{UpTo: decp("100000"), UnitPrice: events.MustDecimal("0.0005")},
		{UnitPrice: events.MustDecimal("0.0001")},
	}})
	type msg struct {
		subject string
		data    []byte
	}
	msgs := make([]msg, 10_000)
	for i := range msgs {
		ev := events.Usage{ID: "replay-" + strconv.Itoa(i), Type: "llm", Customer: "cust-" + strconv.Itoa(i%1000),
			Time: t0.Add(time.Duration(i) * time.Millisecond), Source: "bench",
			Data: map[string]any{"tokens": json.Number(strconv.Itoa(100 + i%900)), "model": "small", "region": "eu-west-1"}}
		data, err := ev.Encode()
		if err != nil {
			b.Fatal(err)
		}
		msgs[i] = msg{"allot.usage.3." + sc.Product + "." + sc.Env + "." + ev.Customer, data}
	}
	st := NewState()
	st.NoIDs, st.Reuse = true, true
	var c Config = cfg // boxed once, as a catalog view is a pointer
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		m := msgs[i%len(msgs)]
		if _, err := st.RateMessage(uint64(i+1), m.subject, m.data, t0, c); err != nil {
			b.Fatal(err)
		}
	}
}
