package events

import (
	"errors"
	"unsafe"

	"github.com/allot-dev/allot/internal/plainjson"
)

// decodeUsageFast reads the form Usage.AppendJSON writes — and any JSON as plain: exact field
// names, strings without escapes, valid UTF-8 — without encoding/json's reflection and
// validation passes. Rating and the ClickHouse sink decode every usage event, so this is on
// the pipeline's hot path. Anything else (an unknown or differently cased key, a repeated key,
// an escape, null where a string is expected) reports errUsageSlowPath and DecodeUsage uses
// encoding/json, so both paths give the same result for every input (FuzzDecodeUsage).
//
// into, when not nil, is the map of a UsageDecoder that is Transient: Data is read into it, and
// the id, the source and the numbers in data are b's own bytes.
func decodeUsageFast(b []byte, in *plainjson.Interner, only PropertyFilter, into map[string]any) (Usage, error) {
	var u Usage
	d := plainjson.Decoder{B: b, Intern: in, Transient: into != nil}
	if !d.Next('{') {
		return Usage{}, errUsageSlowPath
	}
	var seen [6]bool
	for first := true; ; first = false {
		if d.Next('}') {
			break
		}
		if !first && !d.Next(',') {
			return Usage{}, errUsageSlowPath
		}
		k, ok := d.String()
		if !ok || !d.Next(':') {
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
			return Usage{}, errUsageSlowPath // encoding/json's rules apply there
		}
		seen[field] = true
		switch field {
		case 3:
			if d.Peek() != '"' {
				return Usage{}, errUsageSlowPath
			}
			start := d.I
			if _, ok := d.String(); !ok {
				return Usage{}, errUsageSlowPath
			}
			if t, ok := plainjson.Time(d.B[start:d.I]); ok {
				u.Time = t
			} else if err := u.Time.UnmarshalJSON(d.B[start:d.I]); err != nil {
				return Usage{}, errUsageSlowPath
			}
		case 5:
			if d.Peek() != '{' {
				return Usage{}, errUsageSlowPath
			}
			var keys []string // all
			if only != nil && seen[1] {
				keys = only.Properties(u.Type)
			}
			data, ok := d.ObjectInto(into, keys)
			if !ok {
				return Usage{}, errUsageSlowPath
			}
			u.Data = data
		default:
			v, ok := d.String()
			if !ok {
				return Usage{}, errUsageSlowPath
			}
			str := func(v []byte) string {
				if in != nil {
					return in.Key(v)
				}
				return string(v)
			}
			switch field {
			case 0:
				if d.Transient {
					u.ID = transient(v) // UsageDecoder.Transient: b's own bytes
				} else {
					u.ID = string(v) // one per event: kept nowhere
				}
			case 1:
				u.Type = str(v)
			case 2:
				u.Customer = str(v)
			case 4:
				if d.Transient {
					u.Source = transient(v)
				} else {
					u.Source = str(v)
				}
			}
		}
	}
	if d.Peek() != 0 || d.I != len(d.B) {
		return Usage{}, errUsageSlowPath
	}
	return u, nil
}

// transient is b as a string without a copy, for UsageDecoder.Transient: valid while b is
// unchanged.
func transient(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

var errUsageSlowPath = errors.New("not plain: decode with encoding/json")
