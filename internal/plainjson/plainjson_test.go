package plainjson

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// reference is encoding/json with UseNumber, one value and nothing after it.
func reference(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err == nil {
		return nil, errTrailing
	}
	return v, nil
}

var errTrailing = &json.SyntaxError{}

// agree checks that whatever Decode accepts, encoding/json decodes to the same value.
func agree(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := Decode(b)
	if !ok {
		return false
	}
	want, err := reference(b)
	if err != nil {
		t.Fatalf("%q: Decode accepted what encoding/json rejects: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n Decode        %#v\n encoding/json %#v", b, got, want)
	}
	return true
}

func TestDecodeAgreesWithEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{"id":"ev-1","n":12.50,"neg":-0.5e-3,"big":123456789012345678901234567890,"t":true,"f":false,"z":null,"a":[1,"x",[],{}],"o":{"k":{"k":"v"}}}`,
		` [ 1 , 2 ] `, `"ünïcødé ✓"`, `0`, `-0`, `{}`, `[]`, `{"k":1,"k":2}`, `"a string longer than eight bytes"`,
	} {
		if !agree(t, []byte(s)) {
			t.Errorf("%s: plain, but declined", s)
		}
	}
	for _, s := range []string{
		`"esc\"aped"`, `"\u00e9"`, "\"\xff\"", "\"ctl\x01\"", `01`, `1.`, `-`, `.5`, `1e`, `tru`, `nul`, `{"a":1,}`, `[1,]`,
		`{"a" 1}`, `{1:2}`, `[1] [2]`, `{"a":1} x`, ``, `   `, strings.Repeat("[", 65) + strings.Repeat("]", 65),
	} {
		if agree(t, []byte(s)) {
			t.Errorf("%q: not plain JSON, but accepted", s)
		}
	}
	if !agree(t, []byte(strings.Repeat("[", 64)+strings.Repeat("]", 64))) {
		t.Error("64 levels are plain")
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"id":"ev-1","data":{"tokens":12.5,"model":"small","ok":true,"x":null}}`, `[1,[2,{"a":"b"}]]`, `"x"`, `-1.5E+7`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { agree(t, b) })
}

// SkipPlain finds the first quote, backslash or control byte exactly: for every byte at
// every position of a run, and for random runs where several bytes of a word interact
// through borrows.
func TestSkipPlain(t *testing.T) {
	naive := func(b []byte, i int) int {
		for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
			i++
		}
		return i
	}
	check := func(b []byte, i int) {
		if got, want := SkipPlain(b, i), naive(b, i); got != want {
			t.Fatalf("%q from %d: %d, want %d", b, i, got, want)
		}
	}
	for pos := 0; pos < 19; pos++ {
		for c := 0; c < 256; c++ {
			b := []byte("abcdefghijklmnopqrs")
			b[pos] = byte(c)
			for from := 0; from <= pos; from += 3 {
				check(b, from)
			}
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	pool := []byte{'"', '\\', 0, 0x1f, 0x20, 0x21, 0x7f, 0x80, 0xff, 'a', 0x5c ^ 0x80, 0x22 ^ 0x01}
	for i := 0; i < 300_000; i++ {
		b := make([]byte, rng.IntN(40))
		for j := range b {
			if rng.IntN(4) == 0 {
				b[j] = pool[rng.IntN(len(pool))]
			} else {
				b[j] = byte(rng.Uint32())
			}
		}
		check(b, 0)
		if len(b) > 0 {
			check(b, rng.IntN(len(b)))
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	var evs []map[string]any
	for i := 0; i < 500; i++ {
		evs = append(evs, map[string]any{"id": "q0-12345", "type": "api.call", "customer": "cust-345", "time": "2026-01-01T00:00:12.345Z",
			"source": "bench", "data": map[string]any{"tokens": json.Number("445"), "model": "small", "region": "eu-west-1"}})
	}
	body, _ := json.Marshal(evs)
	b.Run("plainjson", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, ok := Decode(body); !ok {
				b.Fatal("declined")
			}
		}
	})
	b.Run("encoding_json", func(b *testing.B) {
		b.SetBytes(int64(len(body)))
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			if _, err := reference(body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// sameTime checks Time against time.Time.UnmarshalJSON: whatever Time accepts must be exactly
// the value UnmarshalJSON gives.
func sameTime(t *testing.T, b []byte) bool {
	t.Helper()
	got, ok := Time(b)
	if !ok {
		return false
	}
	var want time.Time
	if err := want.UnmarshalJSON(b); err != nil {
		t.Fatalf("%s: Time accepted what UnmarshalJSON rejects: %v", b, err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: Time %#v, UnmarshalJSON %#v", b, got, want)
	}
	return true
}

func TestTime(t *testing.T) {
	for _, s := range []string{`"2026-01-01T00:00:12.345Z"`, `"1970-01-01T00:00:00Z"`, `"1969-12-31T23:59:59.999999999Z"`,
		`"2024-02-29T12:00:00Z"`, `"0001-01-01T00:00:00Z"`, `"9999-12-31T23:59:59.1Z"`, `"2000-02-29T00:00:00.000000001Z"`, `"1600-03-01T00:00:00Z"`} {
		if !sameTime(t, []byte(s)) {
			t.Errorf("%s: declined", s)
		}
	}
	for _, s := range []string{`"2026-02-29T00:00:00Z"`, `"2026-13-01T00:00:00Z"`, `"2026-01-01T24:00:00Z"`, `"2026-01-01T00:00:60Z"`,
		`"2026-01-01T00:00:00+01:00"`, `"2026-01-01T00:00:00.Z"`, `"2026-01-01T00:00:00.1234567890Z"`, `"2026-01-01 00:00:00Z"`,
		`"2026-1-01T00:00:00Z"`, `2026-01-01T00:00:00Z`, `"+026-01-01T00:00:00Z"`, `"2026-01-00T00:00:00Z"`} {
		if sameTime(t, []byte(s)) {
			t.Errorf("%s: accepted", s)
		}
	}
	// Every day from 1899 to 2101 at a random instant.
	rng := rand.New(rand.NewPCG(3, 4))
	for d := time.Date(1899, 1, 1, 0, 0, 0, 0, time.UTC); d.Year() < 2101; d = d.AddDate(0, 0, 1) {
		at := d.Add(time.Duration(rng.Int64N(int64(24 * time.Hour))))
		b, _ := at.MarshalJSON()
		if !sameTime(t, b) {
			t.Fatalf("%s: declined", b)
		}
	}
}

func FuzzTime(f *testing.F) {
	f.Add([]byte(`"2026-01-01T00:00:12.345Z"`))
	f.Add([]byte(`"2024-02-29T23:59:59.999999999Z"`))
	f.Fuzz(func(t *testing.T, b []byte) { sameTime(t, b) })
}
