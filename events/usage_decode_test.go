package events

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// sameDecode checks that DecodeUsage (fast path first) and encoding/json agree on b.
func sameDecode(t *testing.T, b []byte) {
	t.Helper()
	want, wantErr := decodeUsageJSON(b)
	if wantErr == nil && (want.ID == "" || want.Type == "" || want.Customer == "") {
		want, wantErr = Usage{}, strconv.ErrSyntax // DecodeUsage's own requirement
	}
	got, gotErr := DecodeUsage(b)
	if (gotErr != nil) != (wantErr != nil) {
		t.Fatalf("%q: encoding/json err %v, DecodeUsage err %v", b, wantErr, gotErr)
	}
	if gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q:\n encoding/json %#v\n DecodeUsage   %#v", b, want, got)
	}
	// A decoder that interns what it read gives the same, the first time and again.
	for range 2 {
		got, gotErr = sharedDecoder.Decode(b)
		if (gotErr != nil) != (wantErr != nil) || gotErr == nil && !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: UsageDecoder %#v, %v; encoding/json %#v, %v", b, got, gotErr, want, wantErr)
		}
	}
	// One that reuses its Data map gives the same: nothing of the event it read before (every
	// input of the tests and of the fuzzer, in turn) is left in it.
	got, gotErr = reusingDecoder.Decode(b)
	if (gotErr != nil) != (wantErr != nil) || gotErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("%q: UsageDecoder reusing its data map %#v, %v; encoding/json %#v, %v", b, got, gotErr, want, wantErr)
	}
	// Reading only some properties leaves the rest out of Data, and nothing else changes.
	wantData := want.Data
	for i, keys := range [][]string{{"tokens"}, {"tokens", "model", "nested"}, {}, {"tokens"}} {
		dec := &sharedDecoder
		if i == 3 {
			dec = &reusingDecoder
		}
		part, partErr := dec.DecodeFor(b, onlyProps(keys))
		if (partErr != nil) != (wantErr != nil) {
			t.Fatalf("%q keeping %q: err %v; encoding/json %v", b, keys, partErr, wantErr)
		}
		if partErr != nil {
			continue
		}
		for k, v := range part.Data {
			if wv, ok := wantData[k]; !ok || !reflect.DeepEqual(v, wv) {
				t.Fatalf("%q keeping %q: data %q is %#v, encoding/json has %#v", b, keys, k, v, wv)
			}
		}
		for _, k := range keys {
			if wv, ok := wantData[k]; ok && !reflect.DeepEqual(part.Data[k], wv) {
				t.Fatalf("%q keeping %q: data %q is %#v, encoding/json has %#v", b, keys, k, part.Data[k], wv)
			}
		}
		rest := want
		part.Data, rest.Data = nil, nil
		if !reflect.DeepEqual(part, rest) {
			t.Fatalf("%q keeping %q: %#v, encoding/json %#v", b, keys, part, want)
		}
	}
}

// onlyProps is a PropertyFilter naming the same properties for every type.
type onlyProps []string

func (o onlyProps) Properties(string) []string { return o }

// sharedDecoder decodes every input of the tests, as a rating partition decodes its stream.
var sharedDecoder UsageDecoder

// reusingDecoder does too, its Data one map emptied and filled again for each (Transient).
var reusingDecoder = UsageDecoder{Transient: true}

func TestDecodeUsageFastPathMatchesEncodingJSON(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	for _, u := range []Usage{
		{ID: "ev-1", Type: "api.call", Customer: "cust-1", Time: t0, Source: "bench",
			Data: map[string]any{"tokens": json.Number("123.50"), "model": "small", "region": "eu-west-1", "ok": true, "no": false, "nothing": nil}},
		{ID: "ev-2", Type: "api.call", Customer: "ünïcødé ✓", Time: t0},
		{ID: "ev-3", Type: "t", Customer: "c", Time: t0, Data: map[string]any{}},
		{ID: "ev-4", Type: "t", Customer: "c", Time: t0, Data: map[string]any{"nested": map[string]any{"a": json.Number("1")}, "list": []any{"x", nil, []any{}}}},
		{ID: "a \"quoted\" id\n", Type: "t", Customer: "c/\\d", Time: t0, Data: map[string]any{"k\"ey": "v\\al", "n": json.Number("-1.5e-7")}},
	} {
		b, err := u.Encode()
		if err != nil {
			t.Fatal(err)
		}
		sameDecode(t, b)
	}
	// The canonical form of a plain event takes the fast path.
	b, _ := Usage{ID: "ev-1", Type: "api.call", Customer: "cust-1", Time: t0, Data: map[string]any{"tokens": json.Number("7")}}.Encode()
	if _, err := decodeUsageFast(b, nil, nil, nil); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	for _, s := range []string{
		`{"id":"a","type":"t","customer":"c","time":"2026-01-01T00:00:00Z"}`,
		` { "id" : "a" , "type":"t","customer":"c" } `,
		`{"id":"a","type":"t","customer":"c"} trailing`,
		`{"ID":"a","type":"t","customer":"c"}`,
		`{"id":"a","id":"b","type":"t","customer":"c"}`,
		`{"id":"a","type":"t","customer":"c","extra":[1,2]}`,
		`{"id":"a","type":"t","customer":"c","data":null}`,
		`{"id":null,"type":"t","customer":"c"}`,
		`{"id":"a","type":"t","customer":"c","data":{"x":01}}`,
		`{"id":"a","type":"t","customer":"c","data":{"x":truex}}`,
		`{"id":"a","type":"t","customer":"c","data":{"x":1,"x":"two"}}`,
		`{"id":"a","type":"t","customer":"c","data":{"x":-}}`,
		`{"id":"a","type":"t","customer":"c","data":{"x":1.}}`,
		`{"id":"a","type":"t","customer":"c","time":"yesterday"}`,
		`{"id":"a","type":"t","customer":"c","time":12}`,
		`{"id":"a","type":"t","customer":"` + "\xff" + `"}`,
		`{"id":"a","type":"t","customer":"c","data":{"` + "\xc3\x28" + `":1}}`,
		`{"id":"a","type":"t","customer":"` + "\x01" + `"}`,
		`{"id":"a","type":"t"}`,
		`{"id":"a","type":"t","customer":""}`,
		`[]`, `{`, ``, `{"id":"a",}`,
	} {
		sameDecode(t, []byte(s))
	}
}

func FuzzDecodeUsage(f *testing.F) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b, _ := Usage{ID: "ev-1", Type: "api.call", Customer: "cust-1", Time: t0, Source: "s",
		Data: map[string]any{"tokens": json.Number("123.5"), "model": "small", "on": true, "off": nil}}.Encode()
	f.Add(b)
	f.Add([]byte(`{"id":"a","type":"t","customer":"c","data":{"x":[1,{"y":null}],"z":"\u00e9"}}`))
	f.Add([]byte(`{"id":"a","type":"t","customer":"c","time":"2026-01-01T00:00:00.123456789+02:00"}`))
	f.Fuzz(func(t *testing.T, b []byte) { sameDecode(t, b) })
}

func BenchmarkDecodeUsage(b *testing.B) {
	data, _ := Usage{ID: "q0-12345", Type: "api.call", Customer: "cust-345", Time: time.Date(2026, 1, 1, 0, 0, 12, 345000000, time.UTC), Source: "bench",
		Data: map[string]any{"tokens": json.Number("445"), "model": "small", "region": "eu-west-1"}}.Encode()
	for _, c := range []struct {
		name string
		f    func([]byte) (Usage, error)
	}{{"fast", DecodeUsage}, {"encoding_json", decodeUsageJSON}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for i := 0; i < b.N; i++ {
				if _, err := c.f(data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
