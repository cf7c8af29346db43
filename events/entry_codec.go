package events

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/allot-dev/allot/internal/plainjson"
)

// Hand-written codecs of the decided ledger entries written most: quota.incremented.v1 (every
// admitted request under an enforced quota) and reservation.created.v1 (every reservation).
// Each is encoded by the process that decides it and decoded by every projection that folds
// it (the deciding process included, straight from the acknowledgement); encoding/json's
// reflection was ~half of an increment's CPU outside the bus. Both directions are checked
// against encoding/json (TestQuotaIncrementedEncodingMatchesStdlib, FuzzDecodeQuotaIncremented,
// TestReservationCreatedCodec, FuzzDecodeReservationCreated).

// AppendJSON appends the JSON of e, as encoding/json would write it.
func (e QuotaIncremented) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"customer":`...)
	b = appendString(b, e.Customer)
	b = append(b, `,"items":`...)
	if e.Items == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, q := range e.Items {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendQuotaUse(b, q); err != nil {
				return nil, err
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"at":`...)
	if b, err = appendTime(b, e.At); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

// AppendJSON appends the JSON of e, as encoding/json would write it.
func (e QuotaIncrements) AppendJSON(b []byte) ([]byte, error) {
	if e.Increments == nil {
		return append(b, `{"increments":null}`...), nil
	}
	var err error
	b = append(b, `{"increments":[`...)
	for i, inc := range e.Increments {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = inc.AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

var quotaIncrementsKeys = []string{"increments"}

// DecodeQuotaIncrements reads a quota.increments.v1 entry as DecodeQuotaIncremented reads one
// customer's: by hand when plain, else with encoding/json.
func DecodeQuotaIncrements(data []byte) (QuotaIncrements, error) {
	return byHand(data, func(d *plainjson.Decoder) (QuotaIncrements, bool) {
		var e QuotaIncrements
		ok := members(d, quotaIncrementsKeys, func(int) bool {
			var ok bool
			e.Increments, ok = elements(d, decodeQuotaIncremented)
			return ok
		})
		return e, ok
	})
}

// byHand decodes data with hand, the hand-written reader of the plain form, when it reads all
// of it; anything else goes to encoding/json, so the result is encoding/json's for every input.
func byHand[T any](data []byte, hand func(*plainjson.Decoder) (T, bool)) (T, error) {
	d := plainjson.Decoder{B: data}
	if v, ok := hand(&d); ok && d.Peek() == 0 && d.I == len(d.B) {
		return v, nil
	}
	var v T
	err := json.Unmarshal(data, &v)
	return v, err
}

func appendQuotaUse(b []byte, q QuotaUse) ([]byte, error) {
	var err error
	b = append(b, `{"quota":`...)
	b = appendString(b, q.Quota)
	b = append(b, `,"amount":`...)
	b = appendDecimal(b, q.Amount)
	b = append(b, `,"period":{"unit":`...)
	b = appendString(b, q.Period.Unit)
	if q.Period.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendInt(b, int64(q.Period.Count), 10)
	}
	if q.Period.Mode != "" {
		b = append(b, `,"mode":`...)
		b = appendString(b, q.Period.Mode)
	}
	if !q.Period.Anchor.IsZero() {
		b = append(b, `,"anchor":`...)
		if b, err = appendTime(b, q.Period.Anchor); err != nil {
			return nil, err
		}
	}
	if q.Period.TimeZone != "" {
		b = append(b, `,"time_zone":`...)
		b = appendString(b, q.Period.TimeZone)
	}
	b = append(b, `},"at":`...)
	if b, err = appendTime(b, q.At); err != nil {
		return nil, err
	}
	if q.UsageSeq != 0 {
		b = append(b, `,"usage_seq":`...)
		b = strconv.AppendUint(b, q.UsageSeq, 10)
	}
	return append(b, '}'), nil
}

// DecodeQuotaIncremented reads a quota.incremented.v1 entry. The form AppendJSON writes (and
// any plain JSON of known keys, in any order) is read by hand; anything else — an unknown or
// differently cased key, a repeated key, an escape, null, a number where a string is expected —
// goes to encoding/json, so the result is encoding/json's for every input.
func DecodeQuotaIncremented(data []byte) (QuotaIncremented, error) {
	return byHand(data, decodeQuotaIncremented)
}

// elements reads a JSON array (never null: a non-nil slice, as encoding/json gives for []),
// each element with one.
func elements[T any](d *plainjson.Decoder, one func(*plainjson.Decoder) (T, bool)) ([]T, bool) {
	if !d.Next('[') {
		return nil, false
	}
	out := []T{}
	for first := true; ; first = false {
		if d.Next(']') {
			return out, true
		}
		if !first && !d.Next(',') {
			return nil, false
		}
		v, ok := one(d)
		if !ok {
			return nil, false
		}
		out = append(out, v)
	}
}

// members calls member for each key of a JSON object, refusing repeated keys (index from
// keys); member reads the value.
func members(d *plainjson.Decoder, keys []string, member func(i int) bool) bool {
	if !d.Next('{') {
		return false
	}
	var seen uint32
	for first := true; ; first = false {
		if d.Next('}') {
			return true
		}
		if !first && !d.Next(',') {
			return false
		}
		k, ok := d.String()
		if !ok || !d.Next(':') {
			return false
		}
		i := -1
		for j, key := range keys {
			if string(k) == key {
				i = j
				break
			}
		}
		if i < 0 || seen&(1<<i) != 0 || !member(i) {
			return false
		}
		seen |= 1 << i
	}
}

var (
	quotaIncrementedKeys = []string{"customer", "items", "at"}
	quotaUseKeys         = []string{"quota", "amount", "period", "at", "usage_seq"}
	periodKeys           = []string{"unit", "count", "mode", "anchor", "time_zone"}
)

func decodeQuotaIncremented(d *plainjson.Decoder) (QuotaIncremented, bool) {
	var e QuotaIncremented
	ok := members(d, quotaIncrementedKeys, func(i int) bool {
		switch i {
		case 0:
			return plainString(d, &e.Customer)
		case 1:
			var ok bool
			e.Items, ok = elements(d, decodeQuotaUse)
			return ok
		default:
			return plainTime(d, &e.At)
		}
	})
	return e, ok
}

func decodeQuotaUse(d *plainjson.Decoder) (QuotaUse, bool) {
	var q QuotaUse
	ok := members(d, quotaUseKeys, func(i int) bool {
		switch i {
		case 0:
			return plainString(d, &q.Quota)
		case 1:
			v, ok := d.String()
			if !ok {
				return false
			}
			a, err := ParseDecimal(string(v))
			q.Amount = a
			return err == nil
		case 2:
			return members(d, periodKeys, func(i int) bool {
				switch i {
				case 0:
					return plainString(d, &q.Period.Unit)
				case 1:
					n, ok := plainInt(d, 64)
					q.Period.Count = int(n)
					return ok
				case 2:
					return plainString(d, &q.Period.Mode)
				case 3:
					return plainTime(d, &q.Period.Anchor)
				default:
					return plainString(d, &q.Period.TimeZone)
				}
			})
		case 3:
			return plainTime(d, &q.At)
		default:
			n, ok := plainInt(d, -1)
			q.UsageSeq = uint64(n)
			return ok
		}
	})
	return q, ok
}

func plainString(d *plainjson.Decoder, s *string) bool {
	v, ok := d.String()
	if ok {
		*s = string(v)
	}
	return ok
}

// plainTime reads an RFC 3339 UTC string as allot writes them.
func plainTime(d *plainjson.Decoder, t *time.Time) bool {
	if d.Peek() != '"' {
		return false
	}
	start := d.I
	if _, ok := d.String(); !ok {
		return false
	}
	v, ok := plainjson.Time(d.B[start:d.I])
	*t = v
	return ok
}

// plainInt reads digits (with a leading minus when bits > 0) into a signed integer of that
// many bits, or with bits < 0 into a uint64; anything encoding/json would treat otherwise
// (a fraction, an exponent, a leading zero, overflow) reports false.
func plainInt(d *plainjson.Decoder, bits int) (uint64, bool) {
	d.Peek() // skips white space
	start := d.I
	end, ok := plainjson.NumberEnd(d.B, start)
	if !ok {
		return 0, false
	}
	d.I = end
	s := string(d.B[start:end])
	if bits < 0 {
		n, err := strconv.ParseUint(s, 10, 64)
		return n, err == nil
	}
	n, err := strconv.ParseInt(s, 10, bits)
	return uint64(n), err == nil
}

// AppendJSON appends the JSON of e, as encoding/json would write it.
func (e ReservationCreated) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = appendString(append(b, `{"reservation":`...), e.Reservation)
	b = appendString(append(b, `,"customer":`...), e.Customer)
	b = append(e.Amount.AppendText(append(b, `,"amount":"`...)), '"')
	if b, err = appendTime(append(b, `,"expires_at":`...), e.ExpiresAt); err != nil {
		return nil, err
	}
	if b, err = appendTime(append(b, `,"at":`...), e.At); err != nil {
		return nil, err
	}
	return append(b, '}'), nil
}

var reservationCreatedKeys = []string{"reservation", "customer", "amount", "expires_at", "at"}

// DecodeReservationCreated reads a reservation.created.v1 entry: plain JSON of known keys by
// hand, anything else with encoding/json, so the result is encoding/json's for every input.
func DecodeReservationCreated(data []byte) (ReservationCreated, error) {
	return byHand(data, decodeReservationCreated)
}

// AppendJSON appends the JSON of e, as encoding/json would write it.
func (e ReservationsCreated) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = appendString(append(b, `{"customer":`...), e.Customer)
	if e.Reservations == nil {
		return append(b, `,"reservations":null}`...), nil
	}
	b = append(b, `,"reservations":[`...)
	for i, r := range e.Reservations {
		if i > 0 {
			b = append(b, ',')
		}
		if b, err = r.AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, "]}"...), nil
}

var reservationsCreatedKeys = []string{"customer", "reservations"}

// DecodeReservationsCreated reads a reservations.created.v1 entry as DecodeReservationCreated
// reads one hold: by hand when plain, else with encoding/json.
func DecodeReservationsCreated(data []byte) (ReservationsCreated, error) {
	return byHand(data, func(d *plainjson.Decoder) (ReservationsCreated, bool) {
		var e ReservationsCreated
		ok := members(d, reservationsCreatedKeys, func(i int) bool {
			if i == 0 {
				return plainString(d, &e.Customer)
			}
			var ok bool
			e.Reservations, ok = elements(d, decodeReservationCreated)
			return ok
		})
		return e, ok
	})
}

func decodeReservationCreated(d *plainjson.Decoder) (ReservationCreated, bool) {
	var e ReservationCreated
	ok := members(d, reservationCreatedKeys, func(i int) bool {
		switch i {
		case 0:
			return plainString(d, &e.Reservation)
		case 1:
			return plainString(d, &e.Customer)
		case 2:
			if d.Peek() != '"' {
				return false
			}
			start := d.I
			if _, ok := d.String(); !ok {
				return false
			}
			return e.Amount.UnmarshalJSON(d.B[start:d.I]) == nil
		case 3:
			return plainTime(d, &e.ExpiresAt)
		default:
			return plainTime(d, &e.At)
		}
	})
	return e, ok
}
