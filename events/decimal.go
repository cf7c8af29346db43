package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/shopspring/decimal"
)

// Decimal is an exact decimal for quantities and prices. It is arbitrary precision (see
// docs/DECISIONS.md for why shopspring/decimal over faster fixed-precision libraries): a
// quantity of 10^20 units priced at 0.000001 stays exact instead of being rounded silently.
//
// In JSON it is written as a string ("12.5") and read from a string or a number, never via
// float64.
type Decimal struct{ d decimal.Decimal }

// ErrNotDecimal is returned when text is not a plain decimal number.
var ErrNotDecimal = errors.New("not a decimal number")

// plainDecimal accepts plain decimals only: an optional sign, digits, an optional fraction,
// an optional exponent of at most four digits — [-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,4})?.
// shopspring accepts more in some versions ("1_000", ".5e"); we fix the grammar ourselves.
// Hand-written because it runs on every quantity of every event.
func plainDecimal(s string) bool {
	i, n := 0, len(s)
	if i < n && (s[i] == '+' || s[i] == '-') {
		i++
	}
	digits := 0
	for i < n && s[i] >= '0' && s[i] <= '9' {
		i, digits = i+1, digits+1
	}
	if i < n && s[i] == '.' {
		i++
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i, digits = i+1, digits+1
		}
	}
	if digits == 0 {
		return false
	}
	if i < n && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < n && (s[i] == '+' || s[i] == '-') {
			i++
		}
		exp := 0
		for i < n && s[i] >= '0' && s[i] <= '9' {
			i, exp = i+1, exp+1
		}
		if exp == 0 || exp > 4 {
			return false
		}
	}
	return i == n
}

// ParseDecimal reads s exactly.
func ParseDecimal(s string) (Decimal, error) {
	if len(s) > 128 || !plainDecimal(s) {
		return Decimal{}, fmt.Errorf("%q: %w", truncate(s, 40), ErrNotDecimal)
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return Decimal{}, fmt.Errorf("%q: %w", truncate(s, 40), ErrNotDecimal)
	}
	return Decimal{d}, nil
}

// MustDecimal is ParseDecimal for constants in tests and tables; it panics on bad input.
func MustDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// DecimalFromInt returns i as a Decimal.
func DecimalFromInt(i int64) Decimal { return Decimal{decimal.NewFromInt(i)} }

// DecimalFromJSON reads a JSON value (a number kept as json.Number, or a string) exactly.
// It is what ingest uses on event properties decoded with UseNumber.
func DecimalFromJSON(v any) (Decimal, error) {
	switch x := v.(type) {
	case json.Number:
		return ParseDecimal(string(x))
	case string:
		return ParseDecimal(x)
	default:
		return Decimal{}, fmt.Errorf("%T: %w", v, ErrNotDecimal)
	}
}

func (a Decimal) Add(b Decimal) Decimal { return Decimal{a.d.Add(b.d)} }
func (a Decimal) Sub(b Decimal) Decimal { return Decimal{a.d.Sub(b.d)} }
func (a Decimal) Mul(b Decimal) Decimal { return Decimal{a.d.Mul(b.d)} }
func (a Decimal) Neg() Decimal          { return Decimal{a.d.Neg()} }
func (a Decimal) Cmp(b Decimal) int     { return a.d.Cmp(b.d) }
func (a Decimal) Sign() int             { return a.d.Sign() }
func (a Decimal) IsZero() bool          { return a.d.IsZero() }

// CeilDiv returns ceil(a / b) for b > 0, exactly: the number of whole packages of size b
// needed to hold a.
func (a Decimal) CeilDiv(b Decimal) Decimal {
	q := a.d.DivRound(b.d, 0) // a starting point; corrected below so the result is exact
	for q.Mul(b.d).LessThan(a.d) {
		q = q.Add(decimal.NewFromInt(1))
	}
	for q.Sub(decimal.NewFromInt(1)).Mul(b.d).GreaterThanOrEqual(a.d) {
		q = q.Sub(decimal.NewFromInt(1))
	}
	return Decimal{q}
}

// String is the canonical text: no exponent, no trailing fractional zeros ("12.5", "0").
func (a Decimal) String() string {
	s := a.d.String()
	if bytes.IndexByte([]byte(s), '.') >= 0 {
		s = string(bytes.TrimRight(bytes.TrimRight([]byte(s), "0"), "."))
	}
	if s == "-0" {
		return "0"
	}
	return s
}

// Credits converts a decimal number of credits to micro-credits, rounding half up (away from
// zero at exactly half, which is what "half up" means for the negative deltas of credit-backs).
// ok is false if the result does not fit in an int64.
func (a Decimal) Credits() (c Credits, ok bool) {
	micro := a.d.Shift(6).Round(0)
	bi := micro.BigInt()
	if !bi.IsInt64() {
		return 0, false
	}
	return Credits(bi.Int64()), true
}

func (a Decimal) MarshalJSON() ([]byte, error) { return json.Marshal(a.String()) }

func (a *Decimal) UnmarshalJSON(b []byte) error {
	s, err := jsonStringOrNumber(b)
	if err != nil {
		return err
	}
	d, err := ParseDecimal(s)
	if err != nil {
		return err
	}
	*a = d
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Underlying returns the library value, for drivers that take it (ClickHouse's Decimal).
func (a Decimal) Underlying() decimal.Decimal { return a.d }
