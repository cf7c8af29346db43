package events

import (
	"time"

	"github.com/allot-dev/allot/internal/plainjson"
)

// DecodeUsageRated reads a whole usage.rated.v1 entry, every field, for readers that show or
// store all of it (the ClickHouse sink writes a row per debit, unrated event and quota use).
// The form AppendJSON writes — and any plain JSON of known keys, in any order — is read by
// hand; anything else (an unknown or differently cased key, a repeated key, an escape, a null
// where encoding/json would keep the field as it is, a number where a string is expected) goes
// to encoding/json, so the result is encoding/json's for every input. encoding/json spent ~3 µs
// per debit of the sink's CPU on it. (The balance fold reads only what it needs, with a
// decoder of its own in package projector.)
func DecodeUsageRated(data []byte) (UsageRated, error) {
	return byHand(data, decodeUsageRated)
}

var (
	usageRatedKeys   = []string{"id", "customer", "first_seq", "last_seq", "debits", "unrated", "quotas"}
	usageDebitedKeys = []string{"id", "kind", "customer", "event_id", "rule", "rule_version", "quantity", "amount", "allocations", "event_time", "usage_seq", "rule_index", "period_start", "period_quantity"}
	usageUnratedKeys = []string{"id", "customer", "event_id", "event_type", "meters", "reasons", "usage_seq", "event_time"}
	allocationKeys   = []string{"block", "amount"}
)

func decodeUsageRated(d *plainjson.Decoder) (UsageRated, bool) {
	var r UsageRated
	ok := members(d, usageRatedKeys, func(i int) bool {
		var ok bool
		switch i {
		case 0:
			return plainString(d, &r.ID)
		case 1:
			return plainString(d, &r.Customer)
		case 2:
			r.FirstSeq, ok = plainInt(d, -1)
		case 3:
			r.LastSeq, ok = plainInt(d, -1)
		case 4:
			r.Debits, ok = elements(d, decodeUsageDebited)
		case 5:
			r.Unrated, ok = elements(d, decodeUsageUnrated)
		default:
			r.Quotas, ok = elements(d, decodeQuotaUse)
		}
		return ok
	})
	return r, ok
}

func decodeUsageDebited(d *plainjson.Decoder) (UsageDebited, bool) {
	var u UsageDebited
	ok := members(d, usageDebitedKeys, func(i int) bool {
		switch i {
		case 0:
			return plainString(d, &u.ID)
		case 1:
			return plainString(d, &u.Kind)
		case 2:
			return plainString(d, &u.Customer)
		case 3:
			return plainString(d, &u.EventID)
		case 4:
			return plainString(d, &u.Rule)
		case 5:
			n, ok := plainInt(d, 64)
			u.RuleVersion = int(n)
			return ok
		case 6:
			return stringDecimal(d, &u.Quantity)
		case 7:
			return plainCredits(d, &u.Amount)
		case 8:
			var ok bool
			u.Allocations, ok = elements(d, decodeAllocation)
			return ok
		case 9:
			return plainTime(d, &u.EventTime)
		case 10:
			var ok bool
			u.UsageSeq, ok = plainInt(d, -1)
			return ok
		case 11:
			n, ok := plainInt(d, 64)
			u.RuleIndex = int(n)
			return ok
		case 12:
			var t time.Time
			u.PeriodStart = &t
			return plainTime(d, &t)
		default:
			var q Decimal
			u.PeriodQuantity = &q
			return stringDecimal(d, &q)
		}
	})
	return u, ok
}

func decodeUsageUnrated(d *plainjson.Decoder) (UsageUnrated, bool) {
	var u UsageUnrated
	ok := members(d, usageUnratedKeys, func(i int) bool {
		var ok bool
		switch i {
		case 0:
			return plainString(d, &u.ID)
		case 1:
			return plainString(d, &u.Customer)
		case 2:
			return plainString(d, &u.EventID)
		case 3:
			return plainString(d, &u.EventType)
		case 4:
			u.Meters, ok = plainStrings(d)
		case 5:
			u.Reasons, ok = plainStrings(d)
		case 6:
			u.UsageSeq, ok = plainInt(d, -1)
		default:
			return plainTime(d, &u.EventTime)
		}
		return ok
	})
	return u, ok
}

func decodeAllocation(d *plainjson.Decoder) (Allocation, bool) {
	var a Allocation
	ok := members(d, allocationKeys, func(i int) bool {
		if i == 0 {
			return plainString(d, &a.Block)
		}
		return plainCredits(d, &a.Amount)
	})
	return a, ok
}

// plainStrings reads an array of plain strings (null goes to encoding/json, which keeps a
// field as it was: the same nil here, but only encoding/json knows for every case).
func plainStrings(d *plainjson.Decoder) ([]string, bool) {
	return elements(d, func(d *plainjson.Decoder) (string, bool) {
		var s string
		return s, plainString(d, &s)
	})
}

// stringDecimal reads a decimal written as a string, as Decimal.UnmarshalJSON does.
func stringDecimal(d *plainjson.Decoder, x *Decimal) bool {
	v, ok := d.String()
	if !ok {
		return false
	}
	p, err := ParseDecimal(string(v))
	*x = p
	return err == nil
}

// plainCredits reads an amount of credits written as a string, by Credits.UnmarshalJSON.
func plainCredits(d *plainjson.Decoder, c *Credits) bool {
	if d.Peek() != '"' {
		return false
	}
	start := d.I
	if _, ok := d.String(); !ok {
		return false
	}
	return c.UnmarshalJSON(d.B[start:d.I]) == nil
}
