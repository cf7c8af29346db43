package events

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// Decimal is an exact decimal for quantities and prices. It is arbitrary precision (see
// docs/DECISIONS.md for why shopspring/decimal over faster fixed-precision libraries): a
// quantity of 10^20 units priced at 0.000001 stays exact instead of being rounded silently.
//
// Almost every value allot meets — a quantity, a price, a running total — has at most 18
// significant digits, so a Decimal holds coef × 10^exp in two machine words and computes on
// them directly; an operation whose result would not fit (or any operand already too big) is
// done in shopspring's arbitrary precision instead, and the result stays there. Both forms
// give the same values: FuzzDecimalMatchesArbitraryPrecision checks every operation against
// shopspring alone. Rating does a handful of these per event; done on big.Int they cost more
// than the rest of rating together.
//
// In JSON it is written as a string ("12.5") and read from a string or a number, never via
// float64.
type Decimal struct {
	coef int64
	exp  int32
	big  *decimal.Decimal // when not nil, the value (and coef, exp are unused)
}

// maxSmallExp bounds the exponent of the two-word form, so exponent arithmetic cannot overflow.
const maxSmallExp = 1 << 20

var pow10 = [19]int64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18}

func fromBig(d decimal.Decimal) Decimal { return Decimal{big: &d} }

// arbitrary returns a in shopspring's form.
func (a Decimal) arbitrary() decimal.Decimal {
	if a.big != nil {
		return *a.big
	}
	return decimal.New(a.coef, a.exp)
}

// scaleUp returns c × 10^d, or false if it does not fit in an int64.
func scaleUp(c int64, d int32) (int64, bool) {
	if c == 0 {
		return 0, true
	}
	if d > 18 {
		return 0, false
	}
	p := pow10[d]
	if c > math.MaxInt64/p || c < -(math.MaxInt64/p) {
		return 0, false
	}
	return c * p, true
}

// aligned returns the coefficients of two-word a and b at the smaller of their exponents.
func aligned(a, b Decimal) (x, y int64, exp int32, ok bool) {
	switch {
	case a.exp == b.exp:
		return a.coef, b.coef, a.exp, true
	case a.exp > b.exp:
		x, ok = scaleUp(a.coef, a.exp-b.exp)
		return x, b.coef, b.exp, ok
	default:
		y, ok = scaleUp(b.coef, b.exp-a.exp)
		return a.coef, y, a.exp, ok
	}
}

func uabs(c int64) uint64 {
	if c < 0 {
		return uint64(-c) // also right for math.MinInt64
	}
	return uint64(c)
}

// digits is how many decimal digits u has (1 for 0), without writing them: quantities are
// checked at every event, and writing a number of three digits or more allocates.
func digits(u uint64) int {
	n := 1
	for ; u >= 10; u /= 10 {
		n++
	}
	return n
}

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

// maxDecimalText bounds a decimal's text, read or written. allot writes decimals in plain
// form, so it bounds the value's plain form too: a short input ("1e-130", "1e999") must not
// become a value whose text — a quantity in a ledger entry, a sum in a snapshot — allot could
// not read back (an entry it cannot read is a whole customer's batch of debits lost, a rating
// snapshot it cannot read stops a partition). Values from outside are held far below it
// (SaneQuantity), so sums of them never reach it.
const maxDecimalText = 1024

// ParseDecimal reads s exactly.
func ParseDecimal(s string) (Decimal, error) {
	if len(s) > maxDecimalText || !plainDecimal(s) {
		return Decimal{}, fmt.Errorf("%q: %w", truncate(s, 40), ErrNotDecimal)
	}
	d, ok := parseSmall(s)
	if !ok {
		b, err := decimal.NewFromString(s)
		if err != nil {
			return Decimal{}, fmt.Errorf("%q: %w", truncate(s, 40), ErrNotDecimal)
		}
		d = fromBig(b)
	}
	if d.plainLen() > maxDecimalText {
		return Decimal{}, fmt.Errorf("%q: %w (its plain form is longer than %d characters)", truncate(s, 40), ErrNotDecimal, maxDecimalText)
	}
	return d, nil
}

// plainLen is (at least) the length of d's plain text, without writing it for the common form.
func (a Decimal) plainLen() int {
	if a.Sign() == 0 {
		return 1
	}
	if a.big != nil {
		e := int(a.big.Exponent())
		n := len(a.big.Coefficient().String())
		if e >= 0 {
			return n + e
		}
		return max(n, -e+1) + 1
	}
	c, e := a.coef, int(a.exp)
	for e < 0 && c != 0 && c%10 == 0 {
		c, e = c/10, e+1
	}
	n := digits(uabs(c))
	if e >= 0 {
		return n + e
	}
	return max(n, -e+1) + 1
}

// MaxQuantityDigits bounds the digits a quantity from outside may have on either side of the
// point (SaneQuantity).
const MaxQuantityDigits = 40

// SaneQuantity reports whether d has at most MaxQuantityDigits digits before the point and as
// many after it: what allot accepts as a usage quantity or a quota weight, whose sums it keeps.
// (Sums of 2^63 of them stay far inside maxDecimalText.)
func (a Decimal) SaneQuantity() bool {
	var e, n int
	if a.big != nil {
		e, n = int(a.big.Exponent()), len(a.big.Coefficient().String())
		if a.big.Sign() == 0 {
			return true
		}
		coef := strings.TrimPrefix(a.big.Coefficient().String(), "-")
		for e < 0 && len(coef) > 1 && coef[len(coef)-1] == '0' {
			coef, e = coef[:len(coef)-1], e+1
		}
		n = len(coef)
	} else {
		c := a.coef
		e = int(a.exp)
		for e < 0 && c != 0 && c%10 == 0 {
			c, e = c/10, e+1
		}
		n = digits(uabs(c))
	}
	return -e <= MaxQuantityDigits && n+e <= MaxQuantityDigits
}

// parseSmall reads a plain decimal (plainDecimal holds) of at most 18 significant digits.
func parseSmall(s string) (Decimal, bool) {
	i, n := 0, len(s)
	neg := false
	if s[0] == '+' || s[0] == '-' {
		neg, i = s[0] == '-', 1
	}
	var coef int64
	var digits, frac int32
	inFrac := false
	for ; i < n; i++ {
		c := s[i]
		switch {
		case c == '.':
			inFrac = true
			continue
		case c < '0' || c > '9':
			goto exponent
		}
		if inFrac {
			frac++
		}
		if coef == 0 && c == '0' {
			continue // a leading zero is no significant digit
		}
		if digits++; digits > 18 {
			return Decimal{}, false
		}
		coef = coef*10 + int64(c-'0')
	}
exponent:
	var exp int32
	if i < n { // 'e' or 'E', then at most four digits (plainDecimal)
		i++
		eneg := false
		if s[i] == '+' || s[i] == '-' {
			eneg, i = s[i] == '-', i+1
		}
		for ; i < n; i++ {
			exp = exp*10 + int32(s[i]-'0')
		}
		if eneg {
			exp = -exp
		}
	}
	if neg {
		coef = -coef
	}
	return Decimal{coef: coef, exp: exp - frac}, true
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
func DecimalFromInt(i int64) Decimal { return Decimal{coef: i} }

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

func (a Decimal) Add(b Decimal) Decimal {
	if a.big == nil && b.big == nil {
		if x, y, e, ok := aligned(a, b); ok {
			if r := x + y; (r > x) == (y > 0) { // no overflow
				return Decimal{coef: r, exp: e}
			}
		}
	}
	return fromBig(a.arbitrary().Add(b.arbitrary()))
}

func (a Decimal) Sub(b Decimal) Decimal {
	if a.big == nil && b.big == nil {
		if x, y, e, ok := aligned(a, b); ok {
			if r := x - y; (r < x) == (y > 0) { // no overflow
				return Decimal{coef: r, exp: e}
			}
		}
	}
	return fromBig(a.arbitrary().Sub(b.arbitrary()))
}

func (a Decimal) Mul(b Decimal) Decimal {
	if a.big == nil && b.big == nil {
		if e := int64(a.exp) + int64(b.exp); e >= -maxSmallExp && e <= maxSmallExp {
			hi, lo := bits.Mul64(uabs(a.coef), uabs(b.coef))
			if hi == 0 && lo <= math.MaxInt64 {
				r := int64(lo)
				if (a.coef < 0) != (b.coef < 0) {
					r = -r
				}
				return Decimal{coef: r, exp: int32(e)}
			}
		}
	}
	return fromBig(a.arbitrary().Mul(b.arbitrary()))
}

func (a Decimal) Neg() Decimal {
	if a.big == nil && a.coef != math.MinInt64 {
		return Decimal{coef: -a.coef, exp: a.exp}
	}
	return fromBig(a.arbitrary().Neg())
}

func (a Decimal) Cmp(b Decimal) int {
	if a.big == nil && b.big == nil {
		if x, y, _, ok := aligned(a, b); ok {
			return cmp.Compare(x, y)
		}
	}
	return a.arbitrary().Cmp(b.arbitrary())
}

func (a Decimal) Sign() int {
	if a.big == nil {
		return cmp.Compare(a.coef, 0)
	}
	return a.big.Sign()
}

func (a Decimal) IsZero() bool { return a.Sign() == 0 }

// CeilDiv returns ceil(a / b) for b > 0, exactly: the number of whole packages of size b
// needed to hold a.
func (a Decimal) CeilDiv(b Decimal) Decimal {
	if a.big == nil && b.big == nil && b.coef > 0 {
		if x, y, _, ok := aligned(a, b); ok {
			q := x / y // truncated toward zero: the ceiling already when x < 0
			if x > 0 && x%y != 0 {
				q++
			}
			return Decimal{coef: q}
		}
	}
	ad, bd := a.arbitrary(), b.arbitrary()
	q := ad.DivRound(bd, 0) // a starting point; corrected below so the result is exact
	for q.Mul(bd).LessThan(ad) {
		q = q.Add(decimal.NewFromInt(1))
	}
	for q.Sub(decimal.NewFromInt(1)).Mul(bd).GreaterThanOrEqual(ad) {
		q = q.Sub(decimal.NewFromInt(1))
	}
	return fromBig(q)
}

// String is the canonical text: no exponent, no trailing fractional zeros ("12.5", "0").
func (a Decimal) String() string {
	if a.big == nil {
		return string(a.appendSmall(make([]byte, 0, 24)))
	}
	s := a.big.String()
	if bytes.IndexByte([]byte(s), '.') >= 0 {
		s = string(bytes.TrimRight(bytes.TrimRight([]byte(s), "0"), "."))
	}
	if s == "-0" {
		return "0"
	}
	return s
}

// AppendText appends String() to b.
func (a Decimal) AppendText(b []byte) ([]byte, error) {
	if a.big == nil {
		return a.appendSmall(b), nil
	}
	return append(b, a.String()...), nil
}

func (a Decimal) appendSmall(b []byte) []byte {
	c, e := a.coef, a.exp
	if c == 0 {
		return append(b, '0')
	}
	for e < 0 && c%10 == 0 {
		c, e = c/10, e+1
	}
	if c < 0 {
		b = append(b, '-')
	}
	start := len(b)
	b = strconv.AppendUint(b, uabs(c), 10)
	if e >= 0 {
		for ; e > 0; e-- {
			b = append(b, '0')
		}
		return b
	}
	digits, point := len(b)-start, int(-e)
	if digits > point { // 1234 e-2: 12.34
		b = append(b, 0)
		at := len(b) - 1 - point
		copy(b[at+1:], b[at:len(b)-1])
		b[at] = '.'
		return b
	}
	// 12 e-4: 0.0012
	pad := point - digits + 2 // "0." and the zeros
	for range pad {
		b = append(b, 0)
	}
	copy(b[start+pad:], b[start:start+digits])
	b[start], b[start+1] = '0', '.'
	for i := start + 2; i < start+pad; i++ {
		b[i] = '0'
	}
	return b
}

// Credits converts a decimal number of credits to micro-credits, rounding half up (away from
// zero at exactly half, which is what "half up" means for the negative deltas of credit-backs).
// ok is false if the result does not fit in an int64.
func (a Decimal) Credits() (c Credits, ok bool) {
	if a.big == nil {
		if e := int64(a.exp) + 6; e >= 0 {
			if v, ok := scaleUp(a.coef, int32(min(e, 19))); ok {
				return Credits(v), true
			}
		} else if e >= -18 {
			p := pow10[-e]
			q, r := a.coef/p, a.coef%p
			if 2*uabs(r) >= uint64(p) {
				if a.coef < 0 {
					q--
				} else {
					q++
				}
			}
			return Credits(q), true
		}
	}
	micro := a.arbitrary().Shift(6).Round(0)
	bi := micro.BigInt()
	if !bi.IsInt64() {
		return 0, false
	}
	return Credits(bi.Int64()), true
}

func (a Decimal) MarshalJSON() ([]byte, error) { return appendDecimal(make([]byte, 0, 24), a), nil }

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
func (a Decimal) Underlying() decimal.Decimal { return a.arbitrary() }
