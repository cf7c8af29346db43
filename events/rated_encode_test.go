package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// checkRatedLikeStdlib asserts AppendJSON and encoding/json agree on r: the same document
// after decoding (so escaping style may differ, meaning may not), or both an error.
func checkRatedLikeStdlib(t *testing.T, r UsageRated) {
	t.Helper()
	want, wantErr := json.Marshal(r)
	got, gotErr := r.AppendJSON(nil)
	require.Equal(t, wantErr == nil, gotErr == nil, "encoding/json err %v, AppendJSON err %v", wantErr, gotErr)
	if wantErr != nil {
		return
	}
	assert.Equal(t, decodeAny(t, want), decodeAny(t, got), "%s", got)
	var back UsageRated
	require.NoError(t, json.Unmarshal(got, &back))
	again, err := back.AppendJSON(nil)
	require.NoError(t, err)
	assert.Equal(t, string(got), string(again), "decode then encode is the identity")
}

func TestUsageRatedEncodingMatchesStdlib(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.FixedZone("x", -(5*3600+30*60)))
	q, pq := MustDecimal("123.500"), MustDecimal("-0.000001")
	full := UsageRated{ID: "rtd_\"<&>\u2028", Customer: "ü\xff", FirstSeq: 1<<64 - 1, LastSeq: 7,
		Debits: []UsageDebited{
			{ID: "dbt_1", Kind: KindDebit, Customer: "c\n", EventID: "e\x01", Rule: "tokens", RuleVersion: -2, Quantity: q, Amount: -123456789,
				Allocations: []Allocation{{Block: "blk_1", Amount: 5}, {Amount: -7}}, EventTime: t0, UsageSeq: 3, RuleIndex: 1, PeriodStart: &t0, PeriodQuantity: &pq},
			{ID: "dbt_2", EventTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			{}, // zero values throughout
		},
		Unrated: []UsageUnrated{{ID: "u", Meters: []string{"a", "<b>"}, Reasons: []string{}, UsageSeq: 9, EventTime: t0}, {}},
		Quotas: []QuotaUse{
			{Quota: "calls", Amount: q, Period: Period{Unit: "month", Count: 3, Mode: "fixed", Anchor: t0, TimeZone: "Europe/Paris"}, At: t0, UsageSeq: 4},
			{Quota: "q2", Period: Period{Unit: "day"}},
		},
	}
	for name, r := range map[string]UsageRated{
		"full":                          full,
		"empty":                         {},
		"only debits with empty slices": {Debits: []UsageDebited{{Allocations: []Allocation{}}}, Unrated: []UsageUnrated{}, Quotas: []QuotaUse{}},
		"year past 9999":                {Debits: []UsageDebited{{EventTime: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}}},
		"offset of a day":               {Quotas: []QuotaUse{{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 24*3600))}}},
		"offset with seconds":           {Quotas: []QuotaUse{{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 561))}}},
	} {
		t.Run(name, func(t *testing.T) { checkRatedLikeStdlib(t, r) })
	}
}

func FuzzUsageRatedEncoding(f *testing.F) {
	f.Add("rtd_1", "cust", "tokens", uint64(1), int64(-5), int64(1700000000), int64(3600), "1.5", "month")
	f.Add("\u2028", "\xff", "<&>", uint64(1<<63), int64(1<<62), int64(-62135596800), int64(-86399), "0.000001", "")
	f.Fuzz(func(t *testing.T, id, customer, rule string, seq uint64, amount, unix, offset int64, qty, unit string) {
		q, err := ParseDecimal(qty)
		if err != nil {
			return
		}
		at := time.Unix(unix, int64(seq%1e9)).In(time.FixedZone("z", int(offset%(30*3600))))
		r := UsageRated{ID: id, Customer: customer, FirstSeq: seq, LastSeq: seq,
			Debits:  []UsageDebited{{ID: id, Customer: customer, Rule: rule, Quantity: q, Amount: Credits(amount), EventTime: at, UsageSeq: seq, PeriodStart: &at, Allocations: []Allocation{{Block: rule, Amount: Credits(amount)}}}},
			Unrated: []UsageUnrated{{ID: id, Meters: []string{rule}, EventTime: at}},
			Quotas:  []QuotaUse{{Quota: rule, Amount: q, Period: Period{Unit: unit, Anchor: at}, At: at, UsageSeq: seq}}}
		checkRatedLikeStdlib(t, r)
	})
}

func BenchmarkUsageRatedEncoding(b *testing.B) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.UTC)
	q := MustDecimal("123.5")
	r := UsageRated{ID: "rtd_x", Customer: "cust-1", FirstSeq: 1, LastSeq: 5}
	for i := 0; i < 5; i++ {
		r.Debits = append(r.Debits, UsageDebited{ID: "dbt_0123456789abcdef01234567", Kind: KindDebit, Customer: "cust-1", EventID: "ev-1", Rule: "tokens", RuleVersion: 1,
			Quantity: q, Amount: 123456, EventTime: t0, UsageSeq: uint64(i + 1), PeriodStart: &t0, PeriodQuantity: &q})
	}
	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		buf := make([]byte, 0, 4096)
		for b.Loop() {
			if _, err := r.AppendJSON(buf[:0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
}
