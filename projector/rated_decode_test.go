package projector

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/allot-dev/allot/events"
)

// ratedSample is a usage.rated.v1 entry as the rating worker writes it (UsageRated.AppendJSON).
func ratedSample() []byte {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 123456789, time.FixedZone("", 2*3600))
	q := events.MustDecimal("123.5")
	var ds []events.UsageDebited
	for i := 0; i < 3; i++ {
		ds = append(ds, events.UsageDebited{ID: "dbt_0123", Kind: events.KindDebit, Customer: "cust-é\"1", EventID: fmt.Sprint("ev-\u2028", i), Rule: "tokens", RuleVersion: 2,
			Quantity: q, Amount: events.Credits(-123456 + int64(i)*1000001), EventTime: t0.Add(time.Duration(i) * time.Hour), UsageSeq: uint64(1<<40 + i), RuleIndex: i,
			Allocations: []events.Allocation{{Block: "blk_1", Amount: 5}, {Amount: 7}}, PeriodStart: &t0, PeriodQuantity: &q})
	}
	data, err := events.UsageRated{ID: "rtd_x", Customer: "cust-<1>", FirstSeq: 1, LastSeq: 5, Debits: ds,
		Unrated: []events.UsageUnrated{{ID: "unr_1", Customer: "cust-1", EventID: "e", EventType: "api.call", Meters: []string{"m"}, Reasons: []string{"no_rule"}, UsageSeq: 9, EventTime: t0}},
		Quotas:  []events.QuotaUse{{Quota: "calls", Amount: q, Period: events.Period{Unit: "month", Anchor: t0}, At: t0, UsageSeq: 3}}}.AppendJSON(nil)
	if err != nil {
		panic(err)
	}
	return data
}

// slowRatedFold is what encoding/json makes of an entry: the reference the fast path must equal.
func slowRatedFold(data []byte) (ratedFold, error) {
	var r ratedFold
	err := json.Unmarshal(data, &r)
	return r, err
}

func checkSameAsEncodingJSON(t *testing.T, data []byte) {
	t.Helper()
	want, wantErr := slowRatedFold(data)
	got, gotErr := decodeRatedFold(data)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%s: encoding/json err %v, decodeRatedFold err %v", data, wantErr, gotErr)
	}
	if wantErr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%s:\n encoding/json  %+v\n decodeRatedFold %+v", data, want, got)
	}
}

func TestDecodeRatedFoldFastPathMatchesEncodingJSON(t *testing.T) {
	data := ratedSample()
	d := ratedDecoder{b: data}
	var r ratedFold
	if err := d.entry(&r); err != nil {
		t.Fatalf("the rating worker's own output must take the fast path: %v", err)
	}
	if len(r.Debits) != 3 || r.Debits[2].UsageSeq != 1<<40+2 || r.Debits[0].Amount != -123456 || r.Debits[2].RuleIndex != 2 || len(r.Unrated) != 1 || len(r.Quotas) != 1 {
		t.Fatalf("decoded %+v", r)
	}
	checkSameAsEncodingJSON(t, data)

	// encoding/json's spelling of the same entry (HTML-escaped strings) takes it too.
	var full events.UsageRated
	if err := json.Unmarshal(data, &full); err != nil {
		t.Fatal(err)
	}
	std, _ := json.Marshal(full)
	if err := (&ratedDecoder{b: std}).entry(&ratedFold{}); err != nil {
		t.Fatalf("encoding/json's output must take the fast path too: %v", err)
	}
	checkSameAsEncodingJSON(t, std)
}

// canonicalRatedSample is an entry whose debits all take debitCanonical: plain strings, one
// debit with allocations (a credit-back's), one without a period, the last near the end.
func canonicalRatedSample() []byte {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 0, time.UTC)
	q := events.MustDecimal("12.5")
	ds := []events.UsageDebited{
		{ID: "dbt_1", Kind: events.KindDebit, Customer: "cust-1", EventID: "ev-1", Rule: "tokens", RuleVersion: 3, Quantity: q, Amount: 1234567, EventTime: t0, UsageSeq: 10, RuleIndex: 1, PeriodStart: &t0, PeriodQuantity: &q},
		{ID: "dbt_2", Kind: events.KindDebit, Customer: "cust-1", EventID: "ev-2", Rule: "", RuleVersion: 1, Quantity: q, Amount: -5, EventTime: t0.Add(1500 * time.Millisecond), UsageSeq: 11,
			Allocations: []events.Allocation{{Block: "blk_1", Amount: 5}, {Amount: 7}}},
		{ID: "dbt_3", Kind: events.KindDebit, Customer: "cust-1", EventID: "ev-3", Rule: "calls", RuleVersion: 1, Quantity: q, Amount: 0, EventTime: t0, UsageSeq: 9999999999999999999},
	}
	data, err := events.UsageRated{ID: "rtd_c", Customer: "cust-1", FirstSeq: 10, LastSeq: 12, Debits: ds}.AppendJSON(nil)
	if err != nil {
		panic(err)
	}
	return data
}

// The rating worker's plain output takes the straight pass, debit by debit, and every change of
// one byte of it decodes as encoding/json decodes it (or fails as it fails): where the pass
// declines, the walk after it must start where the item did.
func TestDebitCanonicalMatchesEncodingJSON(t *testing.T) {
	data := canonicalRatedSample()
	var full events.UsageRated
	if err := json.Unmarshal(data, &full); err != nil {
		t.Fatal(err)
	}
	for i, dbt := range full.Debits {
		one, err := (&events.UsageRated{Debits: []events.UsageDebited{dbt}}).AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		item := one[strings.Index(string(one), "[")+1 : len(one)-2]
		d := ratedDecoder{b: item}
		var x ratedDebit
		if !d.debitCanonical(&x) || d.i != len(item) {
			t.Fatalf("debit %d (%s) did not take the straight pass", i, item)
		}
	}
	checkSameAsEncodingJSON(t, data)
	for i := range data {
		for _, c := range []byte{'"', '\\', '0', '9', '-', '.', 'e', '}', ']', ',', ':', ' ', 'Z', 'x', 0x01, 0xc3, 0xff} {
			if data[i] == c {
				continue
			}
			mutated := append([]byte(nil), data...)
			mutated[i] = c
			checkSameAsEncodingJSON(t, mutated)
		}
	}
	for n := range data { // every truncation
		checkSameAsEncodingJSON(t, data[:n])
	}
}

// Every input the fast path declines goes to encoding/json; these are the edges where the two
// could disagree if it did not.
func TestDecodeRatedFoldEdgeCases(t *testing.T) {
	for _, in := range []string{
		`{}`, ` { } `, `{"debits":[]}`, `{"debits":null}`, `{"debits":[{}]}`,
		`{"debits":[{"usage_seq":1}],"debits":[{"rule_index":2}]}`,        // repeated key
		`{"debits":[{"Usage_Seq":4,"amount":"1.5"}]}`,                     // case-insensitive match
		`{"debits":[{"usage_seq":1,"usage_seq":2}]}`,                      // last wins
		`{"debits":[{"usage_seq":-1}]}`, `{"debits":[{"usage_seq":1.0}]}`, // not a uint
		`{"debits":[{"usage_seq":18446744073709551616}]}`, // overflow
		`{"debits":[{"rule_index":-3}]}`,
		`{"debits":[{"amount":12}]}`, `{"debits":[{"amount":"x"}]}`, `{"debits":[{"amount":null}]}`,
		`{"debits":[{"event_time":"2026-01-01T00:00:00Z"}]}`, `{"debits":[{"event_time":"yesterday"}]}`, `{"debits":[{"event_time":5}]}`,
		`{"debits":[{"quantity":01}]}`, `{"debits":[{"quantity":1.}]}`, `{"debits":[{"quantity":-}]}`, `{"debits":[{"quantity":1e+}]}`, `{"debits":[{"quantity":-0.5E-3}]}`,
		`{"debits":[{"rule":"a\qb"}]}`, `{"debits":[{"rule":"a\u00e9\n"}]}`, `{"debits":[{"rule":"a\u00g9"}]}`, "{\"debits\":[{\"rule\":\"a\x01\"}]}",
		`{"debits":[{"allocations":[{"block":"b","amount":"1"}],"period_start":null}]}`,
		`{"debits":[{"kind":true}]}`, `{"debits":[{"kind":tru}]}`, `{"debits":[{"kind":nul}]}`,
		`{"unrated":[{"usage_seq":7,"meters":["a"]}]}`, `{"unrated":[{"usage_seq":7}],"unrated":[]}`,
		`{"quotas":[{"quota":"q","amount":"2","period":{"unit":"day"},"at":"2026-01-01T00:00:00Z"}]}`, `{"quotas":{}}`,
		`{"id":"x"} x`, `{"id":"x"`, `{"id":"x",}`, `{"id" "x"}`, `[]`, `null`, ``, `{"debits":[{}],}`, `{"debits":[{},]}`,
		`{"id":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, // past encoding/json's depth limit
		`{"id":` + strings.Repeat(`{"a":`, 100) + `1` + strings.Repeat("}", 100) + `}`,
		`{"extra":1}`, `{"d\u0065bits":[{"usage_seq":3}]}`,
	} {
		checkSameAsEncodingJSON(t, []byte(in))
	}
}

func FuzzDecodeRatedFold(f *testing.F) {
	f.Add(ratedSample())
	f.Add(canonicalRatedSample())
	f.Add([]byte(`{"debits":[{"usage_seq":1,"amount":"-0.000001","event_time":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkSameAsEncodingJSON(t, data)
	})
}

func BenchmarkDecodeRatedFold(b *testing.B) {
	data := ratedSample()
	b.Run("fast", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRatedFold(data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := slowRatedFold(data); err != nil {
				b.Fatal(err)
			}
		}
	})
}
