package events

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// stdlibEncode is what encoding/json makes of the same event (keys sorted by json.Marshal).
func stdlibEncode(t *testing.T, u Usage) any {
	t.Helper()
	type plain struct {
		ID       string         `json:"id"`
		Type     string         `json:"type"`
		Customer string         `json:"customer"`
		Time     time.Time      `json:"time"`
		Source   string         `json:"source,omitempty"`
		Data     map[string]any `json:"data,omitempty"`
	}
	b, err := json.Marshal(plain{u.ID, u.Type, u.Customer, u.Time.UTC(), u.Source, u.Data})
	require.NoError(t, err)
	return decodeAny(t, b)
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	require.NoError(t, dec.Decode(&v), string(b))
	return v
}

func TestUsageEncodingMatchesStdlib(t *testing.T) {
	u := Usage{
		ID: "e\"1\\", Type: "t\n\x01", Customer: "ü\u2028<&>", Source: "\xff bad utf8",
		Time: time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)),
		Data: map[string]any{"z": json.Number("1.50"), "a": []any{true, nil, "s", map[string]any{"k2": json.Number("-0"), "k1": false}}, "m": map[string]any{}},
	}
	b, err := u.Encode()
	require.NoError(t, err)
	assert.Equal(t, stdlibEncode(t, u), decodeAny(t, b))
	assert.Contains(t, string(b), `"z":1.50`, "numbers as sent")
	assert.Contains(t, string(b), `"time":"2026-01-02T02:04:05.0000006Z"`)
	assert.True(t, strings.Index(string(b), `"a":`) < strings.Index(string(b), `"m":`), "keys sorted")
	back, err := DecodeUsage(b)
	require.NoError(t, err)
	again, err := back.Encode()
	require.NoError(t, err)
	assert.Equal(t, string(b), string(again), "decode then encode is the identity")

	_, err = Usage{ID: "a", Type: "t", Customer: "c", Data: map[string]any{"f": 1.5}}.Encode()
	require.Error(t, err, "a float64 in data is refused")
	deep := map[string]any{}
	cur := deep
	for i := 0; i < 40; i++ {
		next := map[string]any{}
		cur["x"] = next
		cur = next
	}
	_, err = Usage{ID: "a", Type: "t", Customer: "c", Data: deep}.Encode()
	require.Error(t, err)
}

func FuzzUsageEncoding(f *testing.F) {
	f.Add("id", "type", "cust", `{"a":1,"b":[true,null,"x"]}`)
	f.Add("\x00", "\u2029", "\xfe", `{"k":{"n":-1.5e3}}`)
	f.Fuzz(func(t *testing.T, id, typ, cust, data string) {
		var d map[string]any
		dec := json.NewDecoder(strings.NewReader(data))
		dec.UseNumber()
		if dec.Decode(&d) != nil {
			return
		}
		u := Usage{ID: id, Type: typ, Customer: cust, Time: time.Unix(1700000000, 5).UTC(), Data: d}
		b, err := u.Encode()
		if err != nil {
			return // too deep
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON: %q", b)
		}
		assert.Equal(t, stdlibEncode(t, u), decodeAny(t, b))
	})
}
