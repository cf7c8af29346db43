package events

import (
	"strconv"
	"time"
)

// AppendJSON appends the JSON of r to b. It is the rating worker's hot path (one entry per
// customer per fetched batch), hence hand-written; TestUsageRatedEncodingMatchesStdlib keeps it
// equal in meaning to encoding/json field by field, including omitempty and null slices.
func (r UsageRated) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendString(b, r.ID)
	b = append(b, `,"customer":`...)
	b = appendString(b, r.Customer)
	b = append(b, `,"first_seq":`...)
	b = strconv.AppendUint(b, r.FirstSeq, 10)
	b = append(b, `,"last_seq":`...)
	b = strconv.AppendUint(b, r.LastSeq, 10)
	if len(r.Debits) > 0 {
		b = append(b, `,"debits":[`...)
		for i := range r.Debits {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = r.Debits[i].appendJSON(b); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	if len(r.Unrated) > 0 {
		b = append(b, `,"unrated":[`...)
		for i, u := range r.Unrated {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendString(b, u.ID)
			b = append(b, `,"customer":`...)
			b = appendString(b, u.Customer)
			b = append(b, `,"event_id":`...)
			b = appendString(b, u.EventID)
			b = append(b, `,"event_type":`...)
			b = appendString(b, u.EventType)
			b = append(b, `,"meters":`...)
			b = appendStrings(b, u.Meters)
			b = append(b, `,"reasons":`...)
			b = appendStrings(b, u.Reasons)
			b = append(b, `,"usage_seq":`...)
			b = strconv.AppendUint(b, u.UsageSeq, 10)
			b = append(b, `,"event_time":`...)
			if b, err = appendTime(b, u.EventTime); err != nil {
				return nil, err
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if len(r.Quotas) > 0 {
		b = append(b, `,"quotas":[`...)
		for i, q := range r.Quotas {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendQuotaUse(b, q); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	return append(b, '}'), nil
}

func (d *UsageDebited) appendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"id":`...)
	b = appendString(b, d.ID)
	b = append(b, `,"kind":`...)
	b = appendString(b, d.Kind)
	b = append(b, `,"customer":`...)
	b = appendString(b, d.Customer)
	b = append(b, `,"event_id":`...)
	b = appendString(b, d.EventID)
	b = append(b, `,"rule":`...)
	b = appendString(b, d.Rule)
	b = append(b, `,"rule_version":`...)
	b = strconv.AppendInt(b, int64(d.RuleVersion), 10)
	b = append(b, `,"quantity":`...)
	b = appendDecimal(b, d.Quantity)
	b = append(b, `,"amount":`...)
	b = appendString(b, d.Amount.String())
	if len(d.Allocations) > 0 {
		b = append(b, `,"allocations":[`...)
		for i, a := range d.Allocations {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			if a.Block != "" {
				b = append(b, `"block":`...)
				b = appendString(b, a.Block)
				b = append(b, ',')
			}
			b = append(b, `"amount":`...)
			b = appendString(b, a.Amount.String())
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"event_time":`...)
	if b, err = appendTime(b, d.EventTime); err != nil {
		return nil, err
	}
	b = append(b, `,"usage_seq":`...)
	b = strconv.AppendUint(b, d.UsageSeq, 10)
	b = append(b, `,"rule_index":`...)
	b = strconv.AppendInt(b, int64(d.RuleIndex), 10)
	if d.PeriodStart != nil {
		b = append(b, `,"period_start":`...)
		if b, err = appendTime(b, *d.PeriodStart); err != nil {
			return nil, err
		}
	}
	if d.PeriodQuantity != nil {
		b = append(b, `,"period_quantity":`...)
		b = appendDecimal(b, *d.PeriodQuantity)
	}
	return append(b, '}'), nil
}

// appendStrings writes a string slice as encoding/json does: nil as null.
func appendStrings(b []byte, ss []string) []byte {
	if ss == nil {
		return append(b, "null"...)
	}
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendTime writes t as time.Time.MarshalJSON does: RFC 3339 with nanoseconds, in t's own
// offset. Times MarshalJSON treats specially (years outside [0,9999], offsets of a day or more)
// are left to it, errors included.
func appendTime(b []byte, t time.Time) ([]byte, error) {
	if _, off := t.Zone(); t.Year() < 0 || t.Year() > 9999 || off <= -24*3600 || off >= 24*3600 {
		j, err := t.MarshalJSON()
		if err != nil {
			return nil, err
		}
		return append(b, j...), nil
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), nil
}

// appendDecimal appends d as a JSON string (its text never needs escaping).
func appendDecimal(b []byte, d Decimal) []byte {
	b = append(b, '"')
	b, _ = d.AppendText(b)
	return append(b, '"')
}
