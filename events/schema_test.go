package events

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// samples holds at least one encoded value of every event type allot writes. A new event
// type without a sample and a schema fails TestEverySchemaHasASample.
func samples() map[string][]any {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	exp := t0.AddDate(0, 1, 0)
	cb := MustDecimal("0.25")
	cr5 := Credits(5_000_000)
	return map[string][]any{
		TypeUsageRecorded: {
			Usage{ID: "e1", Type: "api.call", Customer: "c1", Time: t0},
			Usage{ID: "e2", Type: "llm.tokens", Customer: "user@example.com", Time: t0, Source: "svc",
				Data: map[string]any{"tokens": json.Number("1234.5"), "model": "small", "nested": map[string]any{"a": true}}},
		},
		TypeAPIKeyCreated: {APIKeyCreated{Hash: strings.Repeat("ab", 32), Prefix: "ak_live_abcd", Product: "acme", Env: "live", Admin: true, At: t0}},
		TypeMeterDefined: {
			MeterDefined{Product: "acme", Env: "live", At: t0, Meter: Meter{Key: "calls", EventType: "api.call", Aggregation: AggCount}},
			MeterDefined{Product: "acme", Env: "live", At: t0, Meter: Meter{Key: "tokens", EventType: "llm", Aggregation: AggSum, ValueProperty: "tokens",
				Filters: map[string]string{"model": "small"}, GroupBy: []string{"model"}}},
		},
		TypeCreditsGranted: {
			CreditsGranted{Block: "b1", Customer: "c1", Amount: 12_500_000, Source: SourcePromo, Priority: 10, EffectiveAt: t0, At: t0},
			CreditsGranted{Block: "b2", Customer: "c1", Amount: 1, Source: SourceTopup, Priority: 40, EffectiveAt: t0, ExpiresAt: &exp, CostBasis: &cb, At: t0},
		},
		TypeUsageDebited: {
			UsageDebited{ID: "d1", Kind: KindDebit, Customer: "c1", EventID: "e1", Rule: "r", RuleVersion: 1, Quantity: MustDecimal("250"), Amount: 155_000_000,
				Allocations: []Allocation{{Block: "b1", Amount: 100_000_000}, {Amount: 55_000_000}}, EventTime: t0, UsageSeq: 9, PeriodStart: &t0, PeriodQuantity: &cb},
			UsageDebited{ID: "d2", Kind: KindCreditBack, Customer: "c1", EventID: "e2", Rule: "r", RuleVersion: 2, Quantity: MustDecimal("1"), Amount: -80_000_000, EventTime: t0, UsageSeq: 10, RuleIndex: 1},
		},
		TypeUsageUnrated: {UsageUnrated{ID: "u1", Customer: "c1", EventID: "e3", EventType: "llm", Meters: []string{"tokens"}, Reasons: []string{"no_rule"}, UsageSeq: 11, EventTime: t0}},
		TypeUsageRated: {UsageRated{ID: "rtd_1", Customer: "c1", FirstSeq: 9, LastSeq: 11,
			Quotas:  []QuotaUse{{Quota: "q", Amount: MustDecimal("3"), Period: Period{Unit: UnitDay, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0, UsageSeq: 9}},
			Debits:  []UsageDebited{{ID: "d1", Kind: KindDebit, Customer: "c1", EventID: "e1", Rule: "r", RuleVersion: 1, Quantity: MustDecimal("2"), Amount: 3, EventTime: t0, UsageSeq: 9}},
			Unrated: []UsageUnrated{{ID: "u1", Customer: "c1", EventID: "e3", EventType: "llm", Meters: []string{"tokens"}, Reasons: []string{"bad_value"}, UsageSeq: 11, EventTime: t0}}}},
		TypeCreditsExpired:     {CreditsExpired{Block: "b1", Customer: "c1", Amount: 5, At: t0}},
		TypeReservationCreated: {ReservationCreated{Reservation: "r1", Customer: "c1", Amount: 5, ExpiresAt: exp, At: t0}},
		TypeReservationsCreated: {ReservationsCreated{Customer: "c1", Reservations: []ReservationCreated{
			{Reservation: "r1", Customer: "c1", Amount: 5, ExpiresAt: exp, At: t0}, {Reservation: "r2", Customer: "c1", Amount: 1, ExpiresAt: exp, At: t0}}}},
		TypeReservationCommitted: {ReservationCommitted{Reservation: "r1", Customer: "c1", Amount: 7, Allocations: []Allocation{{Block: "b1", Amount: 5}, {Amount: 2}}, At: t0}},
		TypeReservationReleased:  {ReservationReleased{Reservation: "r1", Customer: "c1", At: t0}},
		TypeReservationExpired:   {ReservationReleased{Reservation: "r2", Customer: "c1", At: t0}},
		TypeFeatureDefined:       {FeatureDefined{Product: "acme", Env: "live", At: t0, Feature: Feature{Key: "chat", Rule: "r", OverdraftLimit: 1_000_000}}},
		TypeQuotaDefined: {QuotaDefined{Product: "acme", Env: "live", At: t0, Quota: Quota{Key: "q", Meter: "requests", Limit: MustDecimal("100"),
			Period: Period{Unit: UnitMonth, Count: 1, Mode: ModeFixed, Anchor: t0, TimeZone: "UTC"}, Overrides: map[string]Decimal{"vip": MustDecimal("1000")}}}},
		TypeQuotaIncremented: {QuotaIncremented{Customer: "c1", At: t0, Items: []QuotaUse{{Quota: "q", Amount: MustDecimal("1.5"), Period: Period{Unit: UnitDay, Count: 1, Mode: ModeFirstUse, TimeZone: "Europe/Berlin"}, At: t0}}}},
		TypeQuotaIncrements: {QuotaIncrements{Increments: []QuotaIncremented{
			{Customer: "c1", At: t0, Items: []QuotaUse{{Quota: "q", Amount: MustDecimal("1"), Period: Period{Unit: UnitHour, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0}}},
			{Customer: "c2", At: t0, Items: []QuotaUse{{Quota: "q", Amount: MustDecimal("2"), Period: Period{Unit: UnitHour, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0}}}}}},
		TypeQuotaReset:    {QuotaReset{Customer: "c1", Quota: "q", Period: Period{Unit: UnitHour, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0}},
		TypeQuotaAdjusted: {QuotaAdjusted{Customer: "c1", Quota: "q", Amount: MustDecimal("-2"), Period: Period{Unit: UnitHour, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, At: t0}},
		TypePlanDefined: {PlanDefined{Product: "acme", Env: "live", At: t0, Plan: Plan{Key: "pro", Credits: 100_000_000, Period: Period{Unit: UnitMonth, Count: 1, TimeZone: "UTC"},
			RolloverPercent: &cb, RolloverCap: &cr5, Mode: PlanPrepaid, GraceSeconds: 3600}}},
		TypeSubscriptionStarted: {SubscriptionStarted{Subscription: "sub_1", Customer: "c1", Start: t0, At: t0, Plan: Plan{Key: "pro", Credits: 1, Period: Period{Unit: UnitDay, Count: 1, TimeZone: "UTC"}, Mode: PlanPostpaid},
			Grant: Cycle{Index: 0, Start: t0, End: exp, Block: "sub_1_c0", Amount: 1}}},
		TypeSubscriptionRenewed:  {SubscriptionRenewed{Subscription: "sub_1", Customer: "c1", At: t0, Usage: &cr5, Grant: Cycle{Index: 1, Start: t0, End: exp, Block: "sub_1_c1", Amount: 1, Rollover: 2, RollBlock: "sub_1_r1"}}},
		TypeSubscriptionCanceled: {SubscriptionCanceled{Subscription: "sub_1", Customer: "c1", At: t0}},
		TypeWebhookEndpoint: {WebhookEndpointChanged{Product: "acme", Env: "live", At: t0, Endpoint: WebhookEndpoint{ID: "whe_1", URL: "https://example.com/hook",
			Events: []string{HookCreditsLow}, LowBalanceThreshold: &cr5, Secrets: []WebhookSecret{{Secret: "whsec_abc", CreatedAt: t0, ExpiresAt: &exp}}}}},
		TypeNotification: {Notification{ID: "msg_1", Type: HookCreditsLow, Customer: "c1", Data: map[string]any{"balance": "4"}, At: t0, Endpoint: "whe_1"}},
		TypeRuleVersioned: {
			RuleVersioned{Product: "acme", Env: "live", At: t0, Rule: Rule{Key: "r", Version: 1, Meter: "tokens", Model: ModelGraduated, TierScope: TierScopePeriod, EffectiveFrom: t0,
				Period: &Period{Unit: UnitMonth, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"},
				Tiers:  []Tier{{UpTo: &cb, UnitPrice: MustDecimal("1"), FlatFee: &cb}, {UnitPrice: MustDecimal("0.1")}}}},
			RuleVersioned{Product: "acme", Env: "live", At: t0, Rule: Rule{Key: "r", Version: 2, Meter: "tokens", Model: ModelPerUnit, Price: &cb, PackageSize: &cb, TierScope: TierScopeEvent, EffectiveFrom: t0}},
		},
	}
}

func compileSchemas(t *testing.T) *jsonschema.Compiler {
	t.Helper()
	dir := filepath.Join("..", "schemas", "events")
	files, err := filepath.Glob(filepath.Join(dir, "*.schema.json"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		require.NoError(t, err, f)
		require.NoError(t, c.AddResource("https://allot.dev/schemas/events/"+filepath.Base(f), doc), f)
	}
	return c
}

func TestEncodedEventsMatchSchemas(t *testing.T) {
	c := compileSchemas(t)
	for typ, vs := range samples() {
		sch, err := c.Compile("https://allot.dev/schemas/events/" + typ + ".schema.json")
		require.NoError(t, err, typ)
		for i, v := range vs {
			var b []byte
			if u, ok := v.(Usage); ok {
				b, err = u.Encode()
			} else {
				b, err = json.Marshal(v)
			}
			require.NoError(t, err)
			doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
			require.NoError(t, err)
			require.NoError(t, sch.Validate(doc), "%s sample %d: %s", typ, i, b)
		}
	}
}

// TestSchemasRejectBadEvents makes sure the schemas are not vacuous.
func TestSchemasRejectBadEvents(t *testing.T) {
	c := compileSchemas(t)
	bad := map[string]string{
		TypeUsageRecorded:  `{"id":"e1","type":"t","customer":"c","time":"2026-01-01T00:00:00Z","extra":1}`,
		TypeCreditsGranted: `{"block":"b","customer":"c","amount":12.5,"source":"plan","priority":20,"effective_at":"2026-01-01T00:00:00Z","at":"2026-01-01T00:00:00Z"}`,
		TypeUsageDebited:   `{"id":"d","kind":"debit","customer":"c","event_id":"e","rule":"r","rule_version":1,"quantity":"1","amount":"0.0000001","event_time":"2026-01-01T00:00:00Z","usage_seq":1,"rule_index":0}`,
		TypeUsageUnrated:   `{"id":"u","customer":"c","event_id":"e","event_type":"t","meters":[],"reasons":["no_rule"],"usage_seq":1,"event_time":"2026-01-01T00:00:00Z"}`,
		TypeRuleVersioned:  `{"product":"a","env":"b","at":"2026-01-01T00:00:00Z","rule":{"key":"r","version":0,"meter":"m","model":"flat","tier_scope":"period","effective_from":"2026-01-01T00:00:00Z"}}`,
		TypeMeterDefined:   `{"product":"a","env":"b","at":"2026-01-01T00:00:00Z","meter":{"key":"k","event_type":"t","aggregation":"avg"}}`,
		TypeAPIKeyCreated:  `{"hash":"xyz","prefix":"ak_live_","product":"a","env":"b","admin":false,"at":"2026-01-01T00:00:00Z"}`,
	}
	for typ, doc := range bad {
		sch, err := c.Compile("https://allot.dev/schemas/events/" + typ + ".schema.json")
		require.NoError(t, err)
		v, err := jsonschema.UnmarshalJSON(strings.NewReader(doc))
		require.NoError(t, err)
		require.Error(t, sch.Validate(v), typ)
	}
}

func TestEverySchemaHasASample(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "schemas", "events", "*.v*.schema.json"))
	require.NoError(t, err)
	s := samples()
	for _, f := range files {
		typ := strings.TrimSuffix(filepath.Base(f), ".schema.json")
		require.Contains(t, s, typ, "schema %s has no sample in schema_test.go", f)
	}
	require.Len(t, s, len(files), "every event type needs a schema in schemas/events")
}

func TestEveryTypeHasASample(t *testing.T) {
	s := samples()
	for _, typ := range Types {
		require.Contains(t, s, typ, "event type %s needs a sample here and a schema in schemas/events", typ)
	}
	require.Len(t, s, len(Types))
}
