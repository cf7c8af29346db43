package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Credits is an amount of credits in whole micro-credits (1 credit = 1,000,000). It is the
// only type the ledger holds money in. JSON shows it as a decimal string with up to six
// fractional digits ("12.5", "0.000001", "-3").
type Credits int64

// MicroPerCredit is the number of micro-credits in one credit.
const MicroPerCredit = 1_000_000

// ErrCreditsRange is returned for amounts that do not fit the ledger's integer type.
var ErrCreditsRange = errors.New("amount out of range")

// ErrCreditsPrecision is returned for amounts finer than one micro-credit.
var ErrCreditsPrecision = errors.New("amount has more than 6 fractional digits")

// ParseCredits reads a decimal credit amount exactly. More than six fractional digits is an
// error, not a rounding: a caller granting 0.0000001 credits has made a mistake we must show.
func ParseCredits(s string) (Credits, error) {
	if c, ok := parseMicro(s); ok {
		return c, nil
	}
	d, err := ParseDecimal(strings.TrimSpace(s))
	if err != nil {
		return 0, err
	}
	c, ok := d.Credits()
	if !ok {
		return 0, fmt.Errorf("%q: %w", truncate(s, 40), ErrCreditsRange)
	}
	if back := c.Decimal(); back.Cmp(d) != 0 {
		return 0, fmt.Errorf("%q: %w", truncate(s, 40), ErrCreditsPrecision)
	}
	return c, nil
}

// Decimal returns c as an exact decimal number of credits.
func (c Credits) Decimal() Decimal {
	return Decimal{coef: int64(c), exp: -6}
}

// String formats c as a decimal number of credits with no trailing zeros.
func (c Credits) String() string { return string(c.AppendText(make([]byte, 0, 24))) }

// AppendText appends String() to b: every balance, check and ledger answer writes several.
func (c Credits) AppendText(b []byte) []byte {
	u := uint64(c)
	if c < 0 {
		b = append(b, '-')
		u = uint64(-(c + 1)) + 1 // safe for math.MinInt64
	}
	whole, frac := u/MicroPerCredit, u%MicroPerCredit
	b = strconv.AppendUint(b, whole, 10)
	if frac != 0 {
		var f [7]byte // '.' and six digits, trailing zeros dropped
		f[0] = '.'
		for i := 6; i >= 1; i-- {
			f[i] = byte('0' + frac%10)
			frac /= 10
		}
		n := 7
		for f[n-1] == '0' {
			n--
		}
		b = append(b, f[:n]...)
	}
	return b
}

// Add returns c+d, or ok=false on overflow.
func (c Credits) Add(d Credits) (Credits, bool) {
	s := c + d
	if (d > 0 && s < c) || (d < 0 && s > c) {
		return 0, false
	}
	return s, true
}

func (c Credits) MarshalJSON() ([]byte, error) {
	b := append(make([]byte, 0, 24), '"')
	return append(c.AppendText(b), '"'), nil
}

func (c *Credits) UnmarshalJSON(b []byte) error {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		// The form allot writes, parsed without a copy.
		if v, ok := parseMicro(b[1 : len(b)-1]); ok {
			*c = v
			return nil
		}
	}
	s, err := jsonStringOrNumber(b)
	if err != nil {
		return err
	}
	v, err := ParseCredits(s)
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// parseMicro is the fast path of ParseCredits for the canonical form allot itself writes:
// [-]digits[.1-6 digits], within range. Anything else goes the slow, exact way.
func parseMicro[T string | []byte](s T) (Credits, bool) {
	i, n := 0, len(s)
	neg := false
	if i < n && s[i] == '-' {
		neg, i = true, i+1
	}
	if i == n || n-i > 20 {
		return 0, false
	}
	var whole, frac int64
	digits := 0
	for ; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
		whole = whole*10 + int64(s[i]-'0')
		digits++
	}
	if digits == 0 || digits > 12 { // 12 digits of credits always fit in int64 micro-credits
		return 0, false
	}
	fd := 0
	if i < n && s[i] == '.' {
		for i++; i < n && s[i] >= '0' && s[i] <= '9'; i++ {
			if fd == 6 {
				return 0, false
			}
			frac = frac*10 + int64(s[i]-'0')
			fd++
		}
		if fd == 0 {
			return 0, false
		}
	}
	if i != n {
		return 0, false
	}
	for ; fd < 6; fd++ {
		frac *= 10
	}
	v := whole*MicroPerCredit + frac
	if neg {
		v = -v
	}
	return Credits(v), true
}

// jsonStringOrNumber returns the text of a JSON string (without escapes, the common case, no
// copy through the decoder) or of a JSON number.
func jsonStringOrNumber(b []byte) (string, error) {
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' {
		inner := b[1 : len(b)-1]
		if bytes.IndexByte(inner, '\\') < 0 {
			return string(inner), nil
		}
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	return string(b), nil
}
