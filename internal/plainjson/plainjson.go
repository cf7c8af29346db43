// Package plainjson decodes plain JSON — no escapes in strings, valid UTF-8, nesting up to 64
// levels — into exactly the values encoding/json gives with UseNumber: map[string]any, []any,
// string, json.Number, bool and nil. Anything else it declines, and the caller decodes with
// encoding/json; so for every input the caller's result is encoding/json's (FuzzDecode checks
// it). Ingest and rating decode every usage event; most are plain, and encoding/json spends
// most of its time on reflection and a separate validation pass they do not need.
package plainjson

import (
	"encoding/binary"
	"encoding/json"
	"math/bits"
	"time"
	"unicode/utf8"
	"unsafe"
)

// maxDepth is far below encoding/json's own nesting limit, so nothing this package accepts is
// something encoding/json rejects.
const maxDepth = 64

// Decode decodes b, which must hold one JSON value and nothing but whitespace around it.
// ok is false when b is not plain (or not JSON): decode it with encoding/json.
func Decode(b []byte) (v any, ok bool) {
	d := Decoder{B: b}
	v, ok = d.Value()
	if !ok {
		return nil, false
	}
	if d.ws(); d.I != len(d.B) {
		return nil, false
	}
	return v, true
}

// Decoder walks B from I. Its methods report false, with I anywhere, when the input is not
// plain JSON.
type Decoder struct {
	B     []byte
	I     int
	depth int
	// Intern, when set, gives the object keys, strings and numbers read as values one copy
	// each (Interner).
	Intern *Interner
	// Transient makes the numbers read as values B's own bytes, not copies nor interned ones:
	// for a reader done with them before B changes. Boxing one is a small allocation, cheaper
	// than the interner's lookup in a map that, read once an event among a process's other
	// work, is seldom in the cache.
	Transient bool
}

// Interner hands out one copy of each short text it has seen — object keys, and string and
// number values already boxed as the any a map holds — so a decoder reading body after body
// with the same property names and values (a stream of usage events) allocates them once.
// It keeps texts of at most internLen bytes, and starts afresh once it holds internMax of them,
// so texts seen once (ids in a property) cannot crowd out the ones that repeat for good. Not
// safe for concurrent use: one per goroutine.
type Interner struct {
	keys map[string]string
	strs map[string]any
	nums map[string]any
	n    int
}

const (
	internMax = 4096
	internLen = 64
)

// Key returns b as a string.
func (in *Interner) Key(b []byte) string {
	if s, ok := in.keys[string(b)]; ok {
		return s
	}
	s := string(b)
	if in.room(len(b)) {
		if in.keys == nil {
			in.keys = map[string]string{}
		}
		in.keys[s] = s
	}
	return s
}

// room says whether a text of n bytes is kept, starting afresh when the interner is full.
func (in *Interner) room(n int) bool {
	if n > internLen {
		return false
	}
	if in.n == internMax {
		*in = Interner{}
	}
	in.n++
	return true
}

func (in *Interner) str(b []byte) any {
	if v, ok := in.strs[string(b)]; ok {
		return v
	}
	s := string(b)
	var v any = s
	if in.room(len(b)) {
		if in.strs == nil {
			in.strs = map[string]any{}
		}
		in.strs[s] = v
	}
	return v
}

func (in *Interner) num(b []byte) any {
	if v, ok := in.nums[string(b)]; ok {
		return v
	}
	s := string(b)
	var v any = json.Number(s)
	if in.room(len(b)) {
		if in.nums == nil {
			in.nums = map[string]any{}
		}
		in.nums[s] = v
	}
	return v
}

func (d *Decoder) ws() { d.I = skipWS(d.B, d.I) }

// skipWS returns the index of the first byte at or after i that is not JSON whitespace. Every
// token of every event passes here, and compact JSON has none: one comparison says so, as
// whitespace is all at or below ' '.
func skipWS(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Next skips whitespace and consumes c if it comes next.
func (d *Decoder) Next(c byte) bool {
	i := skipWS(d.B, d.I)
	if i < len(d.B) && d.B[i] == c {
		d.I = i + 1
		return true
	}
	d.I = i
	return false
}

// Peek skips whitespace and returns the next byte (0 at the end).
func (d *Decoder) Peek() byte {
	d.I = skipWS(d.B, d.I)
	if d.I < len(d.B) {
		return d.B[d.I]
	}
	return 0
}

// String reads a string without escapes and returns its contents, valid UTF-8. It works on
// locals and stores the position once: the decoder's fields, read through a pointer, were
// loaded and stored again at every step.
func (d *Decoder) String() ([]byte, bool) {
	b := d.B
	i := skipWS(b, d.I)
	if i >= len(b) || b[i] != '"' {
		d.I = i
		return nil, false
	}
	start := i + 1
	i = SkipPlain(b, start)
	if i >= len(b) || b[i] != '"' {
		d.I = i
		return nil, false // an escape, a control byte or no end
	}
	d.I = i + 1
	s := b[start:i]
	if !isASCII(s) && !utf8.Valid(s) {
		return nil, false // encoding/json replaces invalid bytes
	}
	return s, true
}

func isASCII(s []byte) bool {
	for len(s) >= 8 {
		if binary.LittleEndian.Uint64(s)&0x8080808080808080 != 0 {
			return false
		}
		s = s[8:]
	}
	for _, c := range s {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// Value reads any value.
func (d *Decoder) Value() (any, bool) {
	switch c := d.Peek(); {
	case c == '"':
		s, ok := d.String()
		if d.Intern != nil && ok {
			return d.Intern.str(s), true
		}
		return string(s), ok
	case c == '{':
		return d.Object()
	case c == '[':
		return d.array()
	case c == '-' || c >= '0' && c <= '9':
		start := d.I
		end, ok := NumberEnd(d.B, d.I)
		if !ok {
			return nil, false
		}
		d.I = end
		if d.Transient {
			return json.Number(unsafe.String(&d.B[start], end-start)), true
		}
		if d.Intern != nil {
			return d.Intern.num(d.B[start:end]), true
		}
		return json.Number(d.B[start:end]), true
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	}
	return nil, false
}

// Object reads an object into a map (the last of repeated keys wins, as with encoding/json).
func (d *Decoder) Object() (map[string]any, bool) { return d.ObjectInto(nil, nil) }

// ObjectInto is Object keeping only the members named in keys (all of them when keys is nil):
// the others are read as Value reads them — so what is malformed is refused alike — but not
// built. When m is not nil it is emptied and filled instead of a new map: a reader done with
// one object before it reads the next allocates one map, not one per object.
func (d *Decoder) ObjectInto(m map[string]any, keys []string) (map[string]any, bool) {
	if !d.Next('{') {
		return nil, false
	}
	if d.depth++; d.depth > maxDepth {
		return nil, false
	}
	defer func() { d.depth-- }()
	if m == nil {
		m = make(map[string]any, 4)
	} else {
		clear(m)
	}
	for first := true; ; first = false {
		if d.Next('}') {
			return m, true
		}
		if !first && !d.Next(',') {
			return nil, false
		}
		k, ok := d.String()
		if !ok || !d.Next(':') {
			return nil, false
		}
		key, known := "", false
		if keys != nil {
			// A member kept is named in keys: its key is that text, with no copy to make
			// or look up.
			if key, known = named(keys, k); !known {
				if !d.skip() {
					return nil, false
				}
				continue
			}
		}
		v, ok := d.Value()
		if !ok {
			return nil, false
		}
		switch {
		case known:
		case d.Intern != nil:
			key = d.Intern.Key(k)
		default:
			key = string(k)
		}
		m[key] = v
	}
}

// named returns the text in keys equal to k, if one is.
func named(keys []string, k []byte) (string, bool) {
	for _, n := range keys {
		if n == string(k) {
			return n, true
		}
	}
	return "", false
}

// skip reads a value as Value does, building only what it must (objects and arrays).
func (d *Decoder) skip() bool {
	switch c := d.Peek(); {
	case c == '"':
		_, ok := d.String()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		end, ok := NumberEnd(d.B, d.I)
		d.I = end
		return ok
	}
	_, ok := d.Value()
	return ok
}

func (d *Decoder) array() ([]any, bool) {
	if !d.Next('[') {
		return nil, false
	}
	if d.depth++; d.depth > maxDepth {
		return nil, false
	}
	defer func() { d.depth-- }()
	a := []any{}
	for first := true; ; first = false {
		if d.Next(']') {
			return a, true
		}
		if !first && !d.Next(',') {
			return nil, false
		}
		v, ok := d.Value()
		if !ok {
			return nil, false
		}
		a = append(a, v)
	}
}

func (d *Decoder) literal(word string) bool {
	if len(d.B)-d.I < len(word) || string(d.B[d.I:d.I+len(word)]) != word {
		return false
	}
	d.I += len(word)
	return true
}

// NumberEnd returns the index just past the JSON number starting at b[i], as JSON defines
// them: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?; ok is false if none starts there.
func NumberEnd(b []byte, i int) (end int, ok bool) {
	digits := func() int {
		n := 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i, n = i+1, n+1
		}
		return n
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if digits() == 0 {
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if digits() == 0 {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, false
		}
	}
	return i, true
}

// SkipPlain returns the index of the first byte of b at or after i that is '"', '\\' or a
// control byte (below 0x20) — where a plain run inside a JSON string ends — or len(b). It tests
// eight bytes at a time: "has a zero byte" and "has a byte below n" bit tricks, whose lowest
// flagged byte is exactly the first match (a borrow only runs upwards, from a match).
func SkipPlain(b []byte, i int) int {
	for i+8 <= len(b) {
		if m := StopBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < len(b) && b[i] != '"' && b[i] != '\\' && b[i] >= 0x20 {
		i++
	}
	return i
}

// StopBytes flags, in the high bit of each byte, the bytes of the little-endian word w that end
// a plain run inside a JSON string ('"', '\\' or a control byte); the lowest flag is exactly the
// first such byte (a borrow only runs upwards, from a match), the ones above it may be false.
func StopBytes(w uint64) uint64 {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	bs := w ^ (ones * '\\')
	return ((q-ones)&^q | (bs-ones)&^bs | (w-ones*0x20)&^w) & highs
}

// Time parses a JSON string holding an RFC 3339 UTC time as allot writes them,
// "2006-01-02T15:04:05Z" with up to nine fraction digits, into exactly the value
// time.Time.UnmarshalJSON gives. Anything else (another offset, a leap second, a malformed or
// out-of-range field) reports false: parse it with time.Time.UnmarshalJSON.
func Time(b []byte) (time.Time, bool) {
	// "YYYY-MM-DDTHH:MM:SS" plus quotes and Z is 22 bytes at the least.
	if len(b) < 22 || b[0] != '"' || b[len(b)-1] != '"' || b[len(b)-2] != 'Z' {
		return time.Time{}, false
	}
	s := b[1 : len(b)-2]
	if s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' {
		return time.Time{}, false
	}
	num := func(p []byte) (int, bool) {
		n := 0
		for _, c := range p {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	year, ok1 := num(s[0:4])
	month, ok2 := num(s[5:7])
	day, ok3 := num(s[8:10])
	hour, ok4 := num(s[11:13])
	minute, ok5 := num(s[14:16])
	sec, ok6 := num(s[17:19])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 || !ok6 || month < 1 || month > 12 || day < 1 ||
		day > daysIn(month, year) || hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if frac := s[19:]; len(frac) > 0 {
		if frac[0] != '.' || len(frac) < 2 || len(frac) > 10 {
			return time.Time{}, false
		}
		n, ok := num(frac[1:])
		if !ok {
			return time.Time{}, false
		}
		for i := len(frac) - 1; i < 9; i++ {
			n *= 10
		}
		nsec = n
	}
	unix := daysSinceEpoch(year, month, day)*86400 + int64(hour*3600+minute*60+sec)
	return time.Unix(unix, int64(nsec)).UTC(), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// daysSinceEpoch counts days from 1970-01-01 to the civil date (H. Hinnant's days_from_civil).
func daysSinceEpoch(y, m, d int) int64 {
	if m <= 2 {
		y--
	}
	era := y / 400
	if y < 0 && y%400 != 0 {
		era--
	}
	yoe := y - era*400
	mp := (m + 9) % 12
	doy := (153*mp+2)/5 + d - 1
	doe := yoe*365 + yoe/4 - yoe/100 + doy
	return int64(era)*146097 + int64(doe) - 719468
}
