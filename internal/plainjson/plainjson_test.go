package plainjson

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
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

// The word test agrees with the byte-by-byte one for every byte at every position, and for
// random words (where bytes interact through borrows).
func TestHasQuoteBackslashOrControl(t *testing.T) {
	special := func(c byte) bool { return c == '"' || c == '\\' || c < 0x20 }
	check := func(w [8]byte) {
		want := false
		for _, c := range w {
			want = want || special(c)
		}
		if got := HasQuoteBackslashOrControl(binary.LittleEndian.Uint64(w[:])); got != want {
			t.Fatalf("%q: %v, want %v", w[:], got, want)
		}
	}
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			w := [8]byte{'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}
			w[pos] = byte(c)
			check(w)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 1_000_000; i++ {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], rng.Uint64())
		check(w)
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
