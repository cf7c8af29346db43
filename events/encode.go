package events

import (
	"encoding/json"
	"fmt"
	"slices"
	"time"
	"unicode/utf8"
)

// AppendJSON appends the canonical JSON of u to b: fields in a fixed order, data's object keys
// sorted at every depth, numbers exactly as received, time in UTC (RFC 3339 with nanoseconds
// when present). It is the hot path of ingest, hence hand-written; TestUsageEncodingMatchesStdlib
// keeps it equal in meaning to encoding/json.
func (u Usage) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"id":`...)
	b = appendString(b, u.ID)
	b = append(b, `,"type":`...)
	b = appendString(b, u.Type)
	b = append(b, `,"customer":`...)
	b = appendString(b, u.Customer)
	b = append(b, `,"time":"`...)
	b = u.Time.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if u.Source != "" {
		b = append(b, `,"source":`...)
		b = appendString(b, u.Source)
	}
	if len(u.Data) > 0 {
		b = append(b, `,"data":`...)
		var err error
		if b, err = appendValue(b, u.Data, 0); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

// maxDepth bounds nesting in event data; deeper documents are rejected, not recursed into.
const maxDepth = 32

func appendValue(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("data nested deeper than %d levels", maxDepth)
	}
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		if x {
			return append(b, "true"...), nil
		}
		return append(b, "false"...), nil
	case string:
		return appendString(b, x), nil
	case json.Number:
		if !json.Valid([]byte(x)) || len(x) == 0 || x[0] == '"' {
			return nil, fmt.Errorf("invalid number %q", x)
		}
		return append(b, x...), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	default:
		// Data only ever holds what a UseNumber decoder produces; anything else (a float64
		// from careless code) is refused rather than written inexactly.
		return nil, fmt.Errorf("unsupported value of type %T in event data", v)
	}
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string. Invalid UTF-8 becomes U+FFFD, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, "\uFFFD"...) // the replacement character itself, so decode+encode is the identity
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' { // valid JSON, but not valid JavaScript
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// AppendJSONString appends s as a JSON string that decodes to what encoding/json's does
// (invalid UTF-8 replaced, U+2028/U+2029 escaped; <, > and & are left as they are): for
// hand-written encoders of API answers.
func AppendJSONString(b []byte, s string) []byte { return appendString(b, s) }

// AppendJSONTime appends t as encoding/json writes a time.Time.
func AppendJSONTime(b []byte, t time.Time) ([]byte, error) { return appendTime(b, t) }

// TimeInRange reports whether t can be written: JSON (RFC 3339) holds years 0 to 9999 in UTC,
// and allot takes years from 1. A time past it — 9999-12-31T23:00:00-05:00 is in 10000 in
// UTC — could not be encoded into its ledger entry, and the command failed as a 503.
func TimeInRange(t time.Time) bool {
	y := t.UTC().Year()
	return y >= 1 && y <= 9999
}

// TimeRangeMsg says what TimeInRange takes.
const TimeRangeMsg = "must be between years 1 and 9999 in UTC"
