package rating

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// uniqueConfig is a unique_count meter over a property whose values are numbers, priced per
// period (so every event reaches aggregate and w.Seen).
func uniqueConfig() fakeConfig {
	return config(events.AggUniqueCount, events.Rule{Model: events.ModelPerUnit, Price: decp("1"), TierScope: events.TierScopePeriod, Period: mth})
}

// With Reuse (Rebuild's states), a unique_count value that is a JSON number is decoded as a
// json.Number whose bytes are the message body's (plainjson Decoder.Transient), and
// eventQuantity hands that very string to aggregate, which keeps it in w.Seen: kept as it
// was (found in review), every distinct value pinned its message's whole allocation for the
// life of the rebuilt state. The state keeps copies.
func TestAReuseStateKeepsNoBodyBytes(t *testing.T) {
	cfg := uniqueConfig()
	st := NewState()
	st.NoIDs, st.Reuse = true, true
	var bodies [][]byte
	for i := range 20 {
		ev := usage(fmt.Sprint("ev-", i), "cust", t0, map[string]any{"tokens": json.Number(strconv.Itoa(1000 + i))})
		body, err := ev.Encode()
		require.NoError(t, err)
		bodies = append(bodies, body)
		_, err = st.RateMessage(uint64(i+1), "allot.usage.0."+sc.Product+"."+sc.Env+".cust", body, t0, cfg)
		require.NoError(t, err)
	}
	inBody := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		for _, b := range bodies {
			lo := uintptr(unsafe.Pointer(&b[0]))
			if p >= lo && p < lo+uintptr(len(b)) {
				return true
			}
		}
		return false
	}
	aliased := 0
	for _, a := range st.accs {
		for _, w := range a.Windows {
			for v := range w.Seen {
				if inBody(v) {
					aliased++
				}
			}
		}
	}
	assert.Zero(t, aliased, "unique values kept in the state that are the message bodies' bytes")
}

// A caller done with each message before the next call may read every body into one buffer:
// the unique values the state keeps must not change with it (they did, found in review: the
// snapshot read ["111","111","111"] where it should be ["111","222","333"]).
func TestAReuseStateFoldsOneReusedBufferAsWithout(t *testing.T) {
	cfg := uniqueConfig()
	fresh, reusing := NewState(), NewState()
	fresh.NoIDs, reusing.NoIDs, reusing.Reuse = true, true, true
	buf := make([]byte, 0, 512)
	for i, v := range []string{"111", "222", "333", "111"} {
		ev := usage(fmt.Sprint("ev-", i), "cust", t0, map[string]any{"tokens": json.Number(v)})
		body, err := ev.Encode()
		require.NoError(t, err)
		buf = append(buf[:0], body...) // one buffer, overwritten by each message
		subject := "allot.usage.0." + sc.Product + "." + sc.Env + ".cust"
		want, err := fresh.RateMessage(uint64(i+1), subject, body, t0, cfg)
		require.NoError(t, err)
		got, err := reusing.RateMessage(uint64(i+1), subject, buf, t0, cfg)
		require.NoError(t, err)
		require.Equal(t, len(want.Out.Debits), len(got.Out.Debits), "message %d", i)
	}
	a, err := json.Marshal(fresh)
	require.NoError(t, err)
	b, err := json.Marshal(reusing)
	require.NoError(t, err)
	assert.JSONEq(t, string(a), string(b), "the state folded with Reuse from one reused buffer")
}

// Reuse gives what a state without it gives, over bodies that take every decode path: the fast path with data after or
// before type, the slow path (an escape, an unknown key, a repeated key, a differently cased
// key), no data, data null, malformed bodies, a customer that is not the subject's, event types
// with no meter, and meters of every aggregation with several rules (several debits per
// event). Fresh bodies each (as Rebuild's): only whether the outputs match is checked here.
func TestReuseRatesAsWithoutOnEveryDecodePath(t *testing.T) {
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	rule := func(key, meter string, model string) events.RuleHistory {
		r := events.Rule{Key: key, Meter: meter, Version: 1, Model: model, TierScope: events.TierScopePeriod, Period: &day}
		switch model {
		case events.ModelGraduated:
			r.Tiers, r.Period = exampleTiers, mth
		default:
			r.Price = decp("0.25")
		}
		return events.RuleHistory{Key: key, Versions: []events.Rule{r}}
	}
	cfg := fakeConfig{
		meters: []events.Meter{
			{Key: "calls", EventType: "llm", Aggregation: events.AggCount},
			{Key: "max", EventType: "llm", Aggregation: events.AggMax, ValueProperty: "n"},
			{Key: "latest", EventType: "llm", Aggregation: events.AggLatest, ValueProperty: "n"},
			{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "n", Filters: map[string]string{"model": "small"}},
			{Key: "uniq", EventType: "llm", Aggregation: events.AggUniqueCount, ValueProperty: "user"},
			{Key: "other", EventType: "other", Aggregation: events.AggSum, ValueProperty: "n"},
		},
		rules: map[string][]events.RuleHistory{
			"calls":  {rule("c1", "calls", events.ModelPerUnit), rule("c2", "calls", events.ModelGraduated)},
			"max":    {rule("m1", "max", events.ModelPerUnit)},
			"latest": {rule("l1", "latest", events.ModelGraduated)},
			"tokens": {rule("t1", "tokens", events.ModelGraduated), rule("t2", "tokens", events.ModelPerUnit)},
			"uniq":   {rule("u1", "uniq", events.ModelPerUnit)},
			"other":  {rule("o1", "other", events.ModelPerUnit)},
		},
		quotas: []events.Quota{{Key: "q1", Meter: "calls", Limit: dec("100"), Period: day}, {Key: "q2", Meter: "tokens", Limit: dec("100"), Period: day},
			{Key: "q3", Meter: "calls", Limit: dec("100"), Period: day}},
	}
	fresh, reusing := NewState(), NewState()
	fresh.NoIDs, reusing.NoIDs, reusing.Reuse = true, true, true
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		cust := fmt.Sprint("c", rng.IntN(3))
		ts := t0.Add(time.Duration(i) * time.Minute).Format(time.RFC3339Nano)
		n := strconv.Itoa(rng.IntN(50) - 5)
		user := []string{`"u1"`, `"u2"`, `7`, `8`, `7.0`, `null`, `{"a":1}`}[rng.IntN(7)]
		model := []string{"small", "big"}[rng.IntN(2)]
		typ := []string{"llm", "llm", "llm", "other", "none"}[rng.IntN(5)]
		data := fmt.Sprintf(`{"model":%q,"n":%s,"user":%s,"x":[1,2,{"y":3}]}`, model, n, user)
		var body string
		switch rng.IntN(11) {
		case 0: // data before type
			body = fmt.Sprintf(`{"data":%s,"id":"e%d","type":%q,"customer":%q,"time":%q}`, data, i, typ, cust, ts)
		case 1: // an escape: slow path
			body = fmt.Sprintf(`{"id":"e\u0041%d","type":%q,"customer":%q,"time":%q,"data":%s}`, i, typ, cust, ts, data)
		case 2: // an unknown key after data: slow path after Properties was asked
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q,"data":%s,"zz":1}`, i, typ, cust, ts, data)
		case 3: // a repeated type after data: encoding/json takes the last
			body = fmt.Sprintf(`{"id":"e%d","type":"none","customer":%q,"time":%q,"data":%s,"type":%q}`, i, cust, ts, data, typ)
		case 4: // a differently cased key: encoding/json matches it
			body = fmt.Sprintf(`{"id":"e%d","type":"none","customer":%q,"time":%q,"data":%s,"Type":%q}`, i, cust, ts, data, typ)
		case 5: // no data
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q}`, i, typ, cust, ts)
		case 6: // data null
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q,"data":null}`, i, typ, cust, ts)
		case 7: // malformed
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q,"data":{"n":}`, i, typ, cust, ts)
		case 8: // another customer than the subject's
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":"zz","time":%q,"data":%s}`, i, typ, ts, data)
		case 9: // data with a string number
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q,"data":{"n":"%s","model":"small","user":"%s"}}`, i, typ, cust, ts, n, n)
		default:
			body = fmt.Sprintf(`{"id":"e%d","type":%q,"customer":%q,"time":%q,"source":"s","data":%s}`, i, typ, cust, ts, data)
		}
		subject := "allot.usage.0." + sc.Product + "." + sc.Env + "." + cust
		want, err := fresh.RateMessage(uint64(i+1), subject, []byte(body), t0, cfg)
		require.NoError(t, err)
		got, err := reusing.RateMessage(uint64(i+1), subject, []byte(body), t0, cfg)
		require.NoError(t, err)
		require.Equal(t, want.Out, got.Out, "message %d: %s", i, body)
		require.Equal(t, want.Usage, got.Usage, "message %d: %s", i, body)
		require.Equal(t, want.Malformed != nil, got.Malformed != nil, "message %d: %s", i, body)
	}
	a, err := json.Marshal(fresh)
	require.NoError(t, err)
	b, err := json.Marshal(reusing)
	require.NoError(t, err)
	assert.JSONEq(t, string(a), string(b))
}
