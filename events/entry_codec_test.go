package events

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuotaIncrementedEncodingMatchesStdlib(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.FixedZone("x", -(5*3600+30*60)))
	for name, e := range map[string]QuotaIncremented{
		"full": {Customer: "ü\"<&>\xff", At: t0, Items: []QuotaUse{
			{Quota: "calls", Amount: MustDecimal("12.50"), Period: Period{Unit: "month", Count: 3, Mode: "fixed", Anchor: t0, TimeZone: "Europe/Paris"}, At: t0, UsageSeq: 4},
			{Quota: "q2", Period: Period{Unit: "day"}},
		}},
		"empty":       {},
		"no items":    {Customer: "c", Items: []QuotaUse{}, At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
		"far offsets": {Items: []QuotaUse{{At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("lmt", 561))}}},
	} {
		t.Run(name, func(t *testing.T) {
			want, wantErr := json.Marshal(e)
			got, gotErr := e.AppendJSON(nil)
			require.Equal(t, wantErr == nil, gotErr == nil, "encoding/json err %v, AppendJSON err %v", wantErr, gotErr)
			if wantErr != nil {
				return
			}
			assert.Equal(t, decodeAny(t, want), decodeAny(t, got), "%s", got)
			checkQuotaDecodeLikeStdlib(t, got)
			back, err := DecodeQuotaIncremented(got)
			require.NoError(t, err)
			again, err := back.AppendJSON(nil)
			require.NoError(t, err)
			assert.Equal(t, string(got), string(again), "decode then encode is the identity")
		})
	}
}

// decodesLikeStdlib requires a hand decoder to give, for data, what encoding/json gives: the
// same error or not, and the same value.
func decodesLikeStdlib[T any](t *testing.T, data []byte, decode func([]byte) (T, error)) {
	t.Helper()
	var want T
	wantErr := json.Unmarshal(data, &want)
	got, gotErr := decode(data)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("%q: encoding/json err %v, hand decoder err %v", data, wantErr, gotErr)
	}
	if wantErr == nil && !reflect.DeepEqual(want, got) {
		t.Fatalf("%q:\nencoding/json %#v\nhand decoder  %#v", data, want, got)
	}
}

func checkQuotaDecodeLikeStdlib(t *testing.T, data []byte) {
	t.Helper()
	decodesLikeStdlib(t, data, DecodeQuotaIncremented)
}

func TestDecodeQuotaIncrementedEdges(t *testing.T) {
	for _, in := range []string{
		`{"customer":"c","items":[{"quota":"q","amount":"1.5","period":{"unit":"hour"},"at":"2026-01-01T00:00:00Z"}],"at":"2026-01-01T00:00:00.5Z"}`,
		` { "at" : "2026-01-01T00:00:00Z" , "items" : [ ] , "customer" : "c" } `,
		`{"customer":"c","customer":"d"}`,
		`{"Customer":"c"}`,
		`{"customer":"c\u00e9"}`,
		`{"customer":null,"items":null}`,
		`{"items":[{"amount":2}]}`,
		`{"items":[{"amount":"x"}]}`,
		`{"items":[{"amount":"1e3","usage_seq":-1}]}`,
		`{"items":[{"usage_seq":18446744073709551615,"period":{"count":1.0}}]}`,
		`{"items":[{"usage_seq":18446744073709551616}]}`,
		`{"items":[{"period":{"count":-3,"anchor":"2026-02-29T00:00:00Z"}}]}`,
		`{"items":[{"at":"2026-01-01T01:00:00+01:00"}]}`,
		`{"items":[{"quota":"q","extra":1}]}`,
		`{"at":"2026-01-01T00:00:00Z"} x`,
		`{"items":[{},]}`,
		`[]`, ``, `null`,
	} {
		checkQuotaDecodeLikeStdlib(t, []byte(in))
	}
}

func FuzzDecodeQuotaIncremented(f *testing.F) {
	e := QuotaIncremented{Customer: "cust-1", At: time.Date(2026, 5, 1, 12, 0, 0, 7, time.UTC), Items: []QuotaUse{
		{Quota: "calls", Amount: MustDecimal("1"), Period: Period{Unit: "minute", Count: 5, Mode: "first_use", Anchor: time.Date(2026, 1, 31, 0, 0, 0, 0, time.UTC), TimeZone: "UTC"}, At: time.Date(2026, 5, 1, 12, 0, 0, 7, time.UTC), UsageSeq: 9},
	}}
	b, _ := e.AppendJSON(nil)
	f.Add(b)
	f.Add([]byte(`{"customer":"c","items":[{"amount":"0.25","period":{"unit":"day"}}],"at":"2026-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkQuotaDecodeLikeStdlib(t, data)
	})
}

func checkReservationDecodeLikeStdlib(t *testing.T, data []byte) {
	t.Helper()
	decodesLikeStdlib(t, data, DecodeReservationCreated)
}

func TestReservationCreatedCodec(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.UTC)
	for _, e := range []ReservationCreated{
		{Reservation: "res_1", Customer: "ü\"<&>\xff", Amount: 1_500_000, ExpiresAt: t0.Add(5 * time.Minute), At: t0},
		{Amount: -1, ExpiresAt: t0.In(time.FixedZone("x", 3600))},
		{},
	} {
		want, err := json.Marshal(e)
		require.NoError(t, err)
		got, err := e.AppendJSON(nil)
		require.NoError(t, err)
		assert.Equal(t, decodeAny(t, want), decodeAny(t, got), "%s", got)
		checkReservationDecodeLikeStdlib(t, got)
	}
	for _, in := range []string{
		`{"reservation":"r","customer":"c","amount":"1.5","expires_at":"2026-01-01T00:05:00Z","at":"2026-01-01T00:00:00Z"}`,
		`{"amount":2}`, `{"amount":"x"}`, `{"amount":"1.0000001"}`, `{"reservation":null}`, `{"Reservation":"r"}`, `{"reservation":"r","reservation":"s"}`,
		`{"at":"2026-01-01T01:00:00+01:00"}`, `{"extra":1}`, `{} x`, ``, `[]`,
	} {
		checkReservationDecodeLikeStdlib(t, []byte(in))
	}
}

func FuzzDecodeReservationCreated(f *testing.F) {
	f.Add([]byte(`{"reservation":"res_1","customer":"c","amount":"1","expires_at":"2026-01-01T00:05:00Z","at":"2026-01-01T00:00:00.5Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) { checkReservationDecodeLikeStdlib(t, data) })
}

func TestReservationsCreatedCodec(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.UTC)
	for _, e := range []ReservationsCreated{
		{Customer: "c", Reservations: []ReservationCreated{{Reservation: "res_1", Customer: "c", Amount: 1_500_000, ExpiresAt: t0.Add(time.Minute), At: t0}, {Reservation: "res_2", Customer: "c", Amount: 1, ExpiresAt: t0, At: t0}}},
		{Customer: "ü\"<&>\xff", Reservations: []ReservationCreated{}},
		{},
	} {
		want, err := json.Marshal(e)
		require.NoError(t, err)
		got, err := e.AppendJSON(nil)
		require.NoError(t, err)
		assert.Equal(t, decodeAny(t, want), decodeAny(t, got), "%s", got)
		decodesLikeStdlib(t, got, DecodeReservationsCreated)
	}
	for _, in := range []string{
		`{"customer":"c","reservations":[{"reservation":"r","customer":"c","amount":"1.5","expires_at":"2026-01-01T00:05:00Z","at":"2026-01-01T00:00:00Z"}]}`,
		`{"customer":"c","reservations":null}`, `{"reservations":[]}`, `{"reservations":[{},{"amount":"x"}]}`, `{"reservations":[{"extra":1}]}`,
		`{"reservations":[{}],"reservations":[]}`, `{"Reservations":[]}`, `{"reservations":{}}`, `{"reservations":[1]}`, `{"reservations":[{},]}`,
		`{} x`, ``, `[]`,
	} {
		decodesLikeStdlib(t, []byte(in), DecodeReservationsCreated)
	}
}

func FuzzDecodeReservationsCreated(f *testing.F) {
	f.Add([]byte(`{"customer":"c","reservations":[{"reservation":"res_1","customer":"c","amount":"1","expires_at":"2026-01-01T00:05:00Z","at":"2026-01-01T00:00:00.5Z"},{"reservation":"res_2","customer":"c","amount":"2","expires_at":"2026-01-01T00:05:00Z","at":"2026-01-01T00:00:00Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) { decodesLikeStdlib(t, data, DecodeReservationsCreated) })
}

func TestQuotaIncrementsCodec(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.UTC)
	p := Period{Unit: UnitMonth, Count: 1, Mode: ModeFixed, Anchor: t0, TimeZone: "Asia/Kathmandu"}
	for _, e := range []QuotaIncrements{
		{Increments: []QuotaIncremented{
			{Customer: "c1", At: t0, Items: []QuotaUse{{Quota: "q", Amount: MustDecimal("1.5"), Period: p, At: t0}, {Quota: "r", Amount: MustDecimal("2"), Period: Period{Unit: UnitHour}, At: t0}}},
			{Customer: "ü\"<&>\xff", At: t0.Add(time.Millisecond), Items: []QuotaUse{{Quota: "q", Amount: MustDecimal("1"), Period: p, At: t0}}},
		}},
		{Increments: []QuotaIncremented{}},
		{},
	} {
		want, err := json.Marshal(e)
		require.NoError(t, err)
		got, err := e.AppendJSON(nil)
		require.NoError(t, err)
		assert.Equal(t, decodeAny(t, want), decodeAny(t, got), "%s", got)
		decodesLikeStdlib(t, got, DecodeQuotaIncrements)
	}
	for _, in := range []string{
		`{"increments":[{"customer":"c","items":[{"quota":"q","amount":"1","period":{"unit":"hour"},"at":"2026-01-01T00:00:00Z"}],"at":"2026-01-01T00:00:00Z"}]}`,
		`{"increments":null}`, `{}`, `{"increments":[{},{"customer":1}]}`, `{"increments":[{"extra":1}]}`,
		`{"increments":[],"increments":[{}]}`, `{"Increments":[]}`, `{"increments":{}}`, `{"increments":[1]}`, `{"increments":[{},]}`,
		`{} x`, ``, `[]`,
	} {
		decodesLikeStdlib(t, []byte(in), DecodeQuotaIncrements)
	}
}

func FuzzDecodeQuotaIncrements(f *testing.F) {
	f.Add([]byte(`{"increments":[{"customer":"c","items":[{"quota":"q","amount":"1","period":{"unit":"day","count":1,"mode":"calendar","time_zone":"UTC"},"at":"2026-01-01T00:00:00Z"}],"at":"2026-01-01T00:00:00.5Z"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) { decodesLikeStdlib(t, data, DecodeQuotaIncrements) })
}

func TestUsageRatedDecodeMatchesStdlib(t *testing.T) {
	t0 := time.Date(2026, 3, 31, 23, 59, 59, 120000000, time.UTC)
	q, pq := MustDecimal("123.456789"), MustDecimal("1000")
	full := UsageRated{ID: "rtd_1", Customer: "cust-ü", FirstSeq: 7, LastSeq: 9,
		Debits: []UsageDebited{
			{ID: "dbt_1", Kind: KindDebit, Customer: "cust-ü", EventID: "ev-1", Rule: "tokens", RuleVersion: 3, Quantity: q, Amount: 1_234_567,
				Allocations: []Allocation{{Block: "blk_1", Amount: 1_000_000}, {Amount: 234_567}}, EventTime: t0, UsageSeq: 7, RuleIndex: 1, PeriodStart: &t0, PeriodQuantity: &pq},
			{ID: "dbt_2", Kind: KindCreditBack, Customer: "cust-ü", EventID: "ev-2", Rule: "tokens", RuleVersion: 3, Quantity: MustDecimal("0"), Amount: -5, EventTime: t0, UsageSeq: 8},
		},
		Unrated: []UsageUnrated{{ID: "unr_1", Customer: "cust-ü", EventID: "ev-3", EventType: "llm", Meters: []string{"tokens", "calls"}, Reasons: []string{"no_rule", "bad_value"}, UsageSeq: 9, EventTime: t0},
			{ID: "unr_2", Customer: "c", EventID: "ev-4", EventType: "llm", UsageSeq: 10, EventTime: t0}},
		Quotas: []QuotaUse{{Quota: "q", Amount: MustDecimal("3"), Period: Period{Unit: UnitDay, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0, UsageSeq: 7}},
	}
	for _, r := range []UsageRated{full, {ID: "rtd_2", Customer: "c"}, {}} {
		got, err := r.AppendJSON(nil)
		require.NoError(t, err)
		decodesLikeStdlib(t, got, DecodeUsageRated)
		std, err := json.Marshal(r)
		require.NoError(t, err)
		decodesLikeStdlib(t, std, DecodeUsageRated)
		back, err := DecodeUsageRated(got)
		require.NoError(t, err)
		var want UsageRated
		require.NoError(t, json.Unmarshal(got, &want))
		assert.Equal(t, want, back)
	}
	for _, in := range []string{
		`{"id":"r","debits":[],"unrated":[],"quotas":[]}`,
		`{"id":"r","debits":null}`, `{"debits":[{"period_start":null}]}`, `{"debits":[{"period_quantity":"1.5"}]}`,
		`{"debits":[{"amount":1}]}`, `{"debits":[{"amount":"1.2345678"}]}`, `{"debits":[{"quantity":2}]}`,
		`{"debits":[{"allocations":[{"block":"b","amount":"1"},{"amount":"2"}]}]}`, `{"debits":[{"allocations":[{"Block":"b"}]}]}`,
		`{"unrated":[{"meters":null,"reasons":["a"]}]}`, `{"unrated":[{"meters":[1]}]}`, `{"first_seq":-1}`, `{"first_seq":1.5}`,
		`{"debits":[{"rule_version":9999999999999999999}]}`, `{"debits":[{"rule_index":-3}]}`, `{"id":"a","id":"b"}`, `{"ID":"a"}`,
		`{"debits":[{"event_time":"2026-01-01T00:00:00+01:00"}]}`, `{"debits":[{"kind":"d\u00e9bit"}]}`, `{} x`, ``, `[]`, `null`,
	} {
		decodesLikeStdlib(t, []byte(in), DecodeUsageRated)
	}
}

func FuzzDecodeUsageRated(f *testing.F) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 7, time.UTC)
	pq := MustDecimal("10")
	seed, _ := UsageRated{ID: "rtd_1", Customer: "c", FirstSeq: 1, LastSeq: 2,
		Debits: []UsageDebited{{ID: "d", Kind: KindDebit, Customer: "c", EventID: "e", Rule: "r", RuleVersion: 1, Quantity: MustDecimal("2.5"), Amount: 3,
			Allocations: []Allocation{{Block: "b", Amount: 3}}, EventTime: t0, UsageSeq: 1, PeriodStart: &t0, PeriodQuantity: &pq}},
		Unrated: []UsageUnrated{{ID: "u", Customer: "c", EventID: "e2", EventType: "llm", Meters: []string{"m"}, Reasons: []string{"no_rule"}, UsageSeq: 2, EventTime: t0}},
		Quotas:  []QuotaUse{{Quota: "q", Amount: MustDecimal("1"), Period: Period{Unit: UnitHour}, At: t0, UsageSeq: 1}}}.AppendJSON(nil)
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) { decodesLikeStdlib(t, data, DecodeUsageRated) })
}
