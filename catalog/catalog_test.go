package catalog

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

func mustJSON(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func TestApplyFoldsInOrderAndSkipsApplied(t *testing.T) {
	c := New()
	sc := events.Scope{Product: "acme", Env: "live"}
	key := "ak_live_secret_123"
	require.NoError(t, c.Apply(1, events.TypeAPIKeyCreated, mustJSON(t, events.APIKeyCreated{Hash: HashKey(key), Product: "acme", Env: "live"})))
	m1 := events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"}
	require.NoError(t, c.Apply(2, events.TypeMeterDefined, mustJSON(t, events.MeterDefined{Product: "acme", Env: "live", Meter: m1})))
	m2 := m1
	m2.ValueProperty = "total_tokens"
	require.NoError(t, c.Apply(3, events.TypeMeterDefined, mustJSON(t, events.MeterDefined{Product: "acme", Env: "live", Meter: m2})))
	// A redelivered older change must not roll the meter back.
	require.NoError(t, c.Apply(2, events.TypeMeterDefined, mustJSON(t, events.MeterDefined{Product: "acme", Env: "live", Meter: m1})))
	got, ok := c.Meter(sc, "tokens")
	require.True(t, ok)
	assert.Equal(t, "total_tokens", got.ValueProperty)
	assert.Equal(t, uint64(3), c.Seq())
	assert.Len(t, c.MetersFor(sc, "llm"), 1)
	assert.Empty(t, c.MetersFor(events.Scope{Product: "other", Env: "live"}, "llm"))

	k, ok := c.Authenticate(key)
	require.True(t, ok)
	assert.Equal(t, sc, k.Scope)
	_, ok = c.Authenticate("ak_test_secret_123") // same secret, other env prefix
	assert.False(t, ok)
	// Unknown types are skipped, not fatal; bad payloads are errors.
	require.NoError(t, c.Apply(4, "rule.versioned.v9", []byte(`{}`)))
	require.Error(t, c.Apply(5, events.TypeMeterDefined, []byte(`{`)))
}

func TestKeyEnv(t *testing.T) {
	for key, env := range map[string]string{"ak_live_abcdefgh": "live", "ak_test_x_y_z_123": "test", "ak_prd_12345678": "prd"} {
		got, ok := KeyEnv(key)
		require.True(t, ok, key)
		assert.Equal(t, env, got)
	}
	for _, bad := range []string{"", "live_abcdefgh", "ak_live_short", "ak__abcdefghij", "ak_LIVE_abcdefghij", "sk_live_abcdefghij"} {
		_, ok := KeyEnv(bad)
		assert.False(t, ok, bad)
	}
}

func TestValidateMeter(t *testing.T) {
	tests := []struct {
		name  string
		m     events.Meter
		field string
	}{
		{"ok count", events.Meter{Key: "c", EventType: "t", Aggregation: "count"}, ""},
		{"ok sum", events.Meter{Key: "c", EventType: "t", Aggregation: "sum", ValueProperty: "n", GroupBy: []string{"a"}}, ""},
		{"bad key", events.Meter{Key: "a b", EventType: "t", Aggregation: "count"}, "key"},
		{"no type", events.Meter{Key: "c", Aggregation: "count"}, "event_type"},
		{"no aggregation", events.Meter{Key: "c", EventType: "t"}, "aggregation"},
		{"unknown aggregation", events.Meter{Key: "c", EventType: "t", Aggregation: "avg"}, "aggregation"},
		{"sum without property", events.Meter{Key: "c", EventType: "t", Aggregation: "sum"}, "value_property"},
		{"count with property", events.Meter{Key: "c", EventType: "t", Aggregation: "count", ValueProperty: "n"}, "value_property"},
		{"bad filter", events.Meter{Key: "c", EventType: "t", Aggregation: "count", Filters: map[string]string{"a b": "x"}}, "filters.a b"},
		{"repeated group", events.Meter{Key: "c", EventType: "t", Aggregation: "count", GroupBy: []string{"a", "a"}}, "group_by[1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, fe := ValidateMeter(tt.m)
			if tt.field == "" {
				assert.Nil(t, fe)
				return
			}
			require.NotNil(t, fe)
			assert.Equal(t, tt.field, fe.Field)
		})
	}
}

func TestLoadFile(t *testing.T) {
	write := func(body string) string {
		p := filepath.Join(t.TempDir(), "allot.yaml")
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	_, err := LoadFile(filepath.Join("..", "deploy", "allot.example.yaml"))
	require.NoError(t, err, "the shipped example must load")

	bad := map[string]string{
		"typo":                "keys: []\nmeterz: {}\n",
		"env mismatch":        "keys:\n  - {key: ak_live_abcdefgh, product: acme, env: test}\n",
		"bad product":         "keys:\n  - {key: ak_test_abcdefgh, product: Acme, env: test}\n",
		"meters without keys": "meters:\n  m: {event_type: t, aggregation: count}\n",
		"bad meter":           "keys:\n  - {key: ak_test_abcdefgh, product: acme, env: test}\nmeters:\n  m: {event_type: t, aggregation: avg}\n",
		"unsupported rules":   "rules:\n  r: {meter: m}\n",
		"mixed scopes":        "keys:\n  - {key: ak_test_abcdefgh, product: acme, env: test}\n  - {key: ak_test_abcdefgi, product: globex, env: test}\nmeters:\n  m: {event_type: t, aggregation: count}\n",
	}
	for name, body := range bad {
		t.Run(name, func(t *testing.T) {
			_, err := LoadFile(write(body))
			require.Error(t, err)
		})
	}
}

func TestBootstrapIsIdempotent(t *testing.T) {
	js := bustest.JetStream(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f, err := LoadFile(filepath.Join("..", "deploy", "allot.example.yaml"))
	require.NoError(t, err)

	cat := New()
	go NewFollower(js, bus.ConfigStream, cat, slog.New(slog.DiscardHandler)).Run(ctx)
	n, err := Bootstrap(ctx, js, cat, f, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 3, n, "one key and two meters")
	n, err = Bootstrap(ctx, js, cat, f, time.Now())
	require.NoError(t, err)
	assert.Equal(t, 0, n, "nothing changed")

	// A second catalog rebuilt from the stream sees the same configuration.
	cat2 := New()
	fol := NewFollower(js, bus.ConfigStream, cat2, slog.New(slog.DiscardHandler))
	go fol.Run(ctx)
	require.NoError(t, fol.Sync(ctx))
	sc := events.Scope{Product: "acme", Env: "test"}
	assert.Equal(t, cat.Meters(sc), cat2.Meters(sc))
	_, ok := cat2.Authenticate("ak_test_change_me_0000")
	assert.True(t, ok)
}
