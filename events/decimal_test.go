package events

import (
	"testing"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// arbitraryOnly is d held in shopspring's form, so every operation on it takes the
// arbitrary-precision path: the reference the two-word form must agree with.
func arbitraryOnly(t *testing.T, s string) Decimal {
	t.Helper()
	d, err := decimal.NewFromString(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return fromBig(d)
}

// FuzzDecimalMatchesArbitraryPrecision checks every operation of the two-word form against
// the same operation done in arbitrary precision, including at the edges of int64 where the
// two-word form must hand over.
func FuzzDecimalMatchesArbitraryPrecision(f *testing.F) {
	for _, seed := range [][2]string{
		{"1", "2"}, {"0", "-0"}, {"12.50", "0.0015"}, {"-3", "0.25"}, {"1000000", "0.000001"},
		{"9223372036854775807", "1"}, {"-9223372036854775808", "-1"}, {"922337203685477580.7", "10"},
		{"999999999999999999", "999999999999999999"}, {"0.0000005", "-0.0000005"}, {"0.0000015", "1e-7"},
		{"1e4", "1e-999"}, {"123456789012345678", "0.000000000000000001"}, {"-0.5e-6", "2.5e-6"},
		{"4611686018427387904", "2"}, {"3037000500", "3037000500"}, {"100000000000000000000.5", "0.000001"},
		{"00000000000000000000001.5", "1.000000000000000000000"}, {".5", "5."}, {"+7", "-7E+2"},
		{"999999999999999999", "9e18"}, {"-999999999999999999", "9e18"}, {"-999999999999999999", "-9e18"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, x, y string) {
		if len(x) > 60 || len(y) > 60 || !plainDecimal(x) || !plainDecimal(y) {
			return
		}
		A, B := arbitraryOnly(t, x), arbitraryOnly(t, y)
		a, err := ParseDecimal(x)
		if err != nil {
			if len(A.String()) > maxDecimalText {
				return // refused for its plain form's length, as it must be
			}
			t.Fatal(err)
		}
		b, err := ParseDecimal(y)
		if err != nil {
			if len(B.String()) > maxDecimalText {
				return
			}
			t.Fatal(err)
		}
		same := func(op string, got, want Decimal) {
			t.Helper()
			if got.String() != want.String() || got.Cmp(want) != 0 || !got.Underlying().Equal(want.Underlying()) {
				t.Fatalf("%s(%q, %q) = %s, arbitrary precision says %s", op, x, y, got, want)
			}
			if txt, _ := got.AppendText([]byte("x")); string(txt) != "x"+want.String() {
				t.Fatalf("%s(%q, %q): AppendText %q", op, x, y, txt)
			}
		}
		same("parse", a, A)
		same("parse", b, B)
		same("add", a.Add(b), A.Add(B))
		same("sub", a.Sub(b), A.Sub(B))
		same("mul", a.Mul(b), A.Mul(B))
		same("neg", a.Neg(), A.Neg())
		same("mixed add", a.Add(B), A.Add(b))
		same("square", a.Mul(a).Mul(a), A.Mul(A).Mul(A))
		same("sum", a.Add(a).Add(b).Sub(a), A.Add(A).Add(B).Sub(A))
		if got, want := a.Cmp(b), A.Cmp(B); got != want {
			t.Fatalf("cmp(%q, %q) = %d, want %d", x, y, got, want)
		}
		if a.Sign() != A.Sign() || a.IsZero() != A.IsZero() {
			t.Fatalf("sign(%q) = %d, want %d", x, a.Sign(), A.Sign())
		}
		for _, v := range [][2]Decimal{{a, A}, {b, B}, {a.Mul(b), A.Mul(B)}, {a.Add(b), A.Add(B)}} {
			gc, gok := v[0].Credits()
			wc, wok := v[1].Credits()
			if gc != wc || gok != wok {
				t.Fatalf("credits(%s) = %d %v, want %d %v", v[1], gc, gok, wc, wok)
			}
		}
		// Package rounding, for package sizes and quantities of sensible magnitude (the
		// arbitrary-precision reference corrects a rounded guess one step at a time).
		if b.Sign() > 0 && B.arbitrary().Exponent() > -40 && A.arbitrary().Exponent() > -40 &&
			A.arbitrary().Abs().LessThan(decimal.New(1, 40)) && B.arbitrary().GreaterThan(decimal.New(1, -30)) {
			same("ceildiv", a.CeilDiv(b), A.CeilDiv(B))
		}
	})
}

func TestDecimalStringForms(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"0", "0"}, {"-0.000", "0"}, {"12.500", "12.5"}, {"0.0012", "0.0012"}, {"-0.0012", "-0.0012"},
		{"1e3", "1000"}, {"1.5e-3", "0.0015"}, {"-1234.5678", "-1234.5678"}, {"100", "100"},
		{"9223372036854775807", "9223372036854775807"}, {"-9223372036854775808", "-9223372036854775808"},
		{"123456789012345678901234567890.5", "123456789012345678901234567890.5"}, {"5.", "5"}, {".5", "0.5"},
	} {
		d, err := ParseDecimal(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if got := d.String(); got != c.want {
			t.Errorf("%q: String() = %q, want %q", c.in, got, c.want)
		}
	}
	if got := Credits(-1_500_000).Decimal().String(); got != "-1.5" {
		t.Errorf("Credits(-1.5).Decimal() = %s", got)
	}
}

// A value whose plain form allot could not read back is refused on the way in, however short
// its text ("1e-130" is 132 characters written out, "1e9999" ten thousand); one just inside
// is read, written and read back. Quantities from outside are held to 40 digits either side of
// the point.
func TestDecimalsAllotCanReadBack(t *testing.T) {
	for _, s := range []string{"1e-1023", "1e9999", "-1e-2000"} {
		_, err := ParseDecimal(s)
		assert.ErrorIs(t, err, ErrNotDecimal, s)
	}
	d, err := ParseDecimal("1e-1000")
	require.NoError(t, err)
	text := d.String()
	back, err := ParseDecimal(text)
	require.NoError(t, err, "%d characters", len(text))
	assert.Zero(t, back.Cmp(d))
	for s, sane := range map[string]bool{"1e-130": false, "1e41": false, "1e39": true, "0.1234567890123456789012345678901234567890": true,
		"0.12345678901234567890123456789012345678901": false, "123.4500000000000000000000000000000000000000000": true, "-5000": true, "0": true} {
		d, err := ParseDecimal(s)
		require.NoError(t, err, s)
		assert.Equal(t, sane, d.SaneQuantity(), s)
	}
}
