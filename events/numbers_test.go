package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "0", want: "0"},
		{in: "12.50", want: "12.5"},
		{in: "-0.000", want: "0"},
		{in: "+3", want: "3"},
		{in: ".5", want: "0.5"},
		{in: "1e3", want: "1000"},
		{in: "1.5E-7", want: "0.00000015"},
		{in: "100000000000000000000.000000000001", want: "100000000000000000000.000000000001"},
		{in: "", bad: true},
		{in: "abc", bad: true},
		{in: "1,5", bad: true},
		{in: "0x10", bad: true},
		{in: "NaN", bad: true},
		{in: "Infinity", bad: true},
		{in: "1_000", bad: true},
		{in: " 1", bad: true},
		{in: "1e99999", bad: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			d, err := ParseDecimal(tt.in)
			if tt.bad {
				require.ErrorIs(t, err, ErrNotDecimal)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, d.String())
		})
	}
}

func TestDecimalJSON(t *testing.T) {
	var v struct{ Q Decimal }
	require.NoError(t, json.Unmarshal([]byte(`{"Q": 0.1}`), &v))
	assert.Equal(t, "0.1", v.Q.String())
	require.NoError(t, json.Unmarshal([]byte(`{"Q": "12345678901234567890.123456789"}`), &v))
	assert.Equal(t, "12345678901234567890.123456789", v.Q.String())
	b, err := json.Marshal(v)
	require.NoError(t, err)
	assert.JSONEq(t, `{"Q":"12345678901234567890.123456789"}`, string(b))
	require.Error(t, json.Unmarshal([]byte(`{"Q": true}`), &v))
	require.Error(t, json.Unmarshal([]byte(`{"Q": "1.2.3"}`), &v))
}

func TestDecimalCreditsRoundsHalfUp(t *testing.T) {
	tests := []struct {
		in   string
		want Credits
	}{
		{"1", 1_000_000},
		{"0.0000005", 1},
		{"0.00000049999", 0},
		{"-0.0000005", -1}, // half away from zero: a credit-back rounds like the debit it undoes
		{"155", 155_000_000},
		{"20.10", 20_100_000},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, ok := MustDecimal(tt.in).Credits()
			require.True(t, ok)
			assert.Equal(t, tt.want, c)
		})
	}
	_, ok := MustDecimal("9223372036854.775808").Credits()
	assert.False(t, ok, "one micro-credit past MaxInt64 must not wrap")
}

func TestCeilDiv(t *testing.T) {
	tests := []struct{ a, b, want string }{
		{"0", "10", "0"}, {"1", "10", "1"}, {"10", "10", "1"}, {"10.0001", "10", "2"},
		{"25", "2.5", "10"}, {"25.01", "2.5", "11"}, {"999999999999999999999", "1000", "1000000000000000000"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, MustDecimal(tt.a).CeilDiv(MustDecimal(tt.b)).String(), "%s/%s", tt.a, tt.b)
	}
}

func TestCredits(t *testing.T) {
	tests := []struct {
		in   string
		want Credits
		text string
		err  error
	}{
		{in: "12.5", want: 12_500_000, text: "12.5"},
		{in: "0.000001", want: 1, text: "0.000001"},
		{in: "-3", want: -3_000_000, text: "-3"},
		{in: "1000000", want: 1_000_000_000_000, text: "1000000"},
		{in: "0.0000001", err: ErrCreditsPrecision},
		{in: "1e30", err: ErrCreditsRange},
		{in: "x", err: ErrNotDecimal},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := ParseCredits(tt.in)
			if tt.err != nil {
				require.True(t, errors.Is(err, tt.err), "got %v", err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, c)
			assert.Equal(t, tt.text, c.String())
		})
	}
	assert.Equal(t, "-9223372036854.775808", Credits(math.MinInt64).String())
	assert.Equal(t, "9223372036854.775807", Credits(math.MaxInt64).String())
	_, ok := Credits(math.MaxInt64).Add(1)
	assert.False(t, ok)
	s, ok := Credits(5).Add(-7)
	assert.True(t, ok)
	assert.Equal(t, Credits(-2), s)
}

func FuzzCreditsRoundTrip(f *testing.F) {
	for _, v := range []int64{0, 1, -1, 999999, 1000000, math.MaxInt64, math.MinInt64, 12345678} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v int64) {
		c := Credits(v)
		back, err := ParseCredits(c.String())
		if err != nil {
			t.Fatalf("%d → %q: %v", v, c.String(), err)
		}
		if back != c {
			t.Fatalf("%d → %q → %d", v, c.String(), back)
		}
	})
}

// FuzzPlainDecimal keeps the hand-written grammar check equal to its regular expression.
func FuzzPlainDecimal(f *testing.F) {
	grammar := regexp.MustCompile(`^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d{1,4})?$`)
	for _, s := range []string{"1", "-1.5", ".5", "5.", "1e10", "1E+1234", "1e12345", "+", ".", "e1", "1.2.3", "--1", "1e", "0x1", "1_0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := plainDecimal(s), grammar.MatchString(s); got != want {
			t.Fatalf("plainDecimal(%q) = %v, the grammar says %v", s, got, want)
		}
	})
}

// FuzzParseCreditsFastPath keeps the integer fast path equal to the exact decimal path.
func FuzzParseCreditsFastPath(f *testing.F) {
	for _, s := range []string{"0", "-0", "12.5", "0.000001", "999999999999.999999", "9223372036854.775807", "1.", ".5", "-", "1e3", "00012.100"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseMicro(s)
		if !ok {
			return
		}
		d, err := ParseDecimal(s)
		if err != nil {
			t.Fatalf("fast path took %q, the exact path refuses it: %v", s, err)
		}
		slow, inRange := d.Credits()
		if !inRange || slow != fast {
			t.Fatalf("%q: fast %d, exact %d (in range %v)", s, fast, slow, inRange)
		}
	})
}

// creditsTextReference is how credits were formatted before AppendText: the definition the
// fast form must keep.
func creditsTextReference(c Credits) string {
	neg := c < 0
	u := uint64(c)
	if neg {
		u = uint64(-(c + 1)) + 1
	}
	whole, frac := u/MicroPerCredit, u%MicroPerCredit
	s := strconv.FormatUint(whole, 10)
	if neg {
		s = "-" + s
	}
	if frac != 0 {
		s += "." + strings.TrimRight(fmt.Sprintf("%06d", frac), "0")
	}
	return s
}

func FuzzCreditsText(f *testing.F) {
	for _, c := range []int64{0, 1, -1, 1_000_000, -1_500_000, 123_456_789, 100, 10, math.MaxInt64, math.MinInt64, 999_999, -1_000_001} {
		f.Add(c)
	}
	f.Fuzz(func(t *testing.T, c int64) {
		want := creditsTextReference(Credits(c))
		if got := Credits(c).String(); got != want {
			t.Fatalf("Credits(%d).String() = %q, want %q", c, got, want)
		}
		j, _ := Credits(c).MarshalJSON()
		if string(j) != `"`+want+`"` {
			t.Fatalf("Credits(%d).MarshalJSON() = %s", c, j)
		}
		var back Credits
		if err := back.UnmarshalJSON(j); err != nil || back != Credits(c) {
			t.Fatalf("Credits(%d) round trip: %d, %v", c, back, err)
		}
	})
}
