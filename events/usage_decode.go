package events

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// decodeUsageFast reads the form Usage.AppendJSON writes — and any JSON that is as plain:
// exact field names, strings without escapes, data values that are strings, numbers,
// booleans or null — without encoding/json's reflection and validation passes. Rating and
// the ClickHouse sink decode every usage event, so this is on the pipeline's hot path.
// Anything else (an unknown or differently cased key, an escape, invalid UTF-8, a nested data
// value, null where a string is expected) reports errUsageSlowPath, and DecodeUsage uses
// encoding/json, so both paths give the same result for every input (FuzzDecodeUsage).
func decodeUsageFast(b []byte) (Usage, error) {
	var u Usage
	s := usageScanner{b: b}
	if !s.next('{') {
		return Usage{}, errUsageSlowPath
	}
	var seen [6]bool
	for first := true; ; first = false {
		if s.next('}') {
			break
		}
		if !first && !s.next(',') {
			return Usage{}, errUsageSlowPath
		}
		k, ok := s.str()
		if !ok || !s.next(':') {
			return Usage{}, errUsageSlowPath
		}
		field := -1
		switch string(k) {
		case "id":
			field = 0
		case "type":
			field = 1
		case "customer":
			field = 2
		case "time":
			field = 3
		case "source":
			field = 4
		case "data":
			field = 5
		}
		if field < 0 || seen[field] {
			return Usage{}, errUsageSlowPath // repeated keys follow encoding/json's rules there
		}
		seen[field] = true
		switch field {
		case 3:
			s.ws()
			start := s.i
			if _, ok := s.str(); !ok {
				return Usage{}, errUsageSlowPath
			}
			if err := u.Time.UnmarshalJSON(s.b[start:s.i]); err != nil {
				return Usage{}, errUsageSlowPath
			}
		case 5:
			data, ok := s.data()
			if !ok {
				return Usage{}, errUsageSlowPath
			}
			u.Data = data
		default:
			v, ok := s.str()
			if !ok {
				return Usage{}, errUsageSlowPath
			}
			switch field {
			case 0:
				u.ID = string(v)
			case 1:
				u.Type = string(v)
			case 2:
				u.Customer = string(v)
			case 4:
				u.Source = string(v)
			}
		}
	}
	if s.ws(); s.i != len(s.b) {
		return Usage{}, errUsageSlowPath
	}
	return u, nil
}

var errUsageSlowPath = errors.New("not plain: decode with encoding/json")

type usageScanner struct {
	b []byte
	i int
}

func (s *usageScanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *usageScanner) next(c byte) bool {
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// str reads a string without escapes and returns its contents (valid UTF-8).
func (s *usageScanner) str() ([]byte, bool) {
	if !s.next('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for s.i+8 <= len(s.b) {
		w := binary.LittleEndian.Uint64(s.b[s.i:])
		if HasQuoteBackslashOrControl(w) {
			break
		}
		if w&0x8080808080808080 != 0 {
			ascii = false
		}
		s.i += 8
	}
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			v := s.b[start:s.i]
			s.i++
			if !ascii && !utf8.Valid(v) {
				return nil, false // encoding/json would replace the bad bytes
			}
			return v, true
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return nil, false
}

// HasQuoteBackslashOrControl reports whether any byte of the eight in w is '"', '\\' or below
// 0x20: the bytes that end a plain run inside a JSON string. The hand-written decoders skip
// string contents a word at a time with it. (Bit tricks for "has a zero byte" and "has a byte
// below n", exact as to whether any byte matches.)
func HasQuoteBackslashOrControl(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	q := w ^ (ones * '"')
	bs := w ^ (ones * '\\')
	return ((q-ones)&^q|(bs-ones)&^bs|(w-ones*0x20)&^w)&highs != 0
}

// data reads an object of plain values: strings, numbers (kept as json.Number), booleans and
// null.
func (s *usageScanner) data() (map[string]any, bool) {
	if !s.next('{') {
		return nil, false
	}
	m := make(map[string]any, 4)
	for first := true; ; first = false {
		if s.next('}') {
			return m, true
		}
		if !first && !s.next(',') {
			return nil, false
		}
		k, ok := s.str()
		if !ok || !s.next(':') {
			return nil, false
		}
		s.ws()
		if s.i >= len(s.b) {
			return nil, false
		}
		var v any
		switch c := s.b[s.i]; {
		case c == '"':
			str, ok := s.str()
			if !ok {
				return nil, false
			}
			v = string(str)
		case c == '-' || c >= '0' && c <= '9':
			start := s.i
			if !s.number() {
				return nil, false
			}
			v = json.Number(s.b[start:s.i])
		case bytes.HasPrefix(s.b[s.i:], []byte("true")):
			s.i += 4
			v = true
		case bytes.HasPrefix(s.b[s.i:], []byte("false")):
			s.i += 5
			v = false
		case bytes.HasPrefix(s.b[s.i:], []byte("null")):
			s.i += 4
		default:
			return nil, false // nested values: encoding/json
		}
		m[string(k)] = v
	}
}

// number consumes a number as JSON defines them: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *usageScanner) number() bool {
	digits := func() int {
		n := 0
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i, n = s.i+1, n+1
		}
		return n
	}
	if s.b[s.i] == '-' {
		s.i++
	}
	if s.i < len(s.b) && s.b[s.i] == '0' {
		s.i++
	} else if digits() == 0 {
		return false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if digits() == 0 {
			return false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}
