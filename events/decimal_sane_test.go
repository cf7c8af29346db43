package events

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestSaneQuantitySign(t *testing.T) {
	forty := strings.Repeat("9", 40)
	assert.True(t, MustDecimal(forty).SaneQuantity())
	assert.True(t, MustDecimal("-"+forty).SaneQuantity(), "a negative of the same digits is as sane")
	frac := "0." + strings.Repeat("9", 40)
	assert.True(t, MustDecimal(frac).SaneQuantity())
	assert.True(t, MustDecimal("-"+frac).SaneQuantity())
}

func TestDigitsAsWritten(t *testing.T) {
	for _, u := range []uint64{0, 1, 9, 10, 99, 100, 12345, 1<<63 - 1, 1 << 63, ^uint64(0)} {
		if got, want := digits(u), len(strconv.FormatUint(u, 10)); got != want {
			t.Errorf("digits(%d) = %d, written it has %d", u, got, want)
		}
	}
	for u := uint64(1); u < 1e19; u *= 10 {
		for _, v := range []uint64{u - 1, u, u + 1} {
			if got, want := digits(v), len(strconv.FormatUint(v, 10)); got != want {
				t.Errorf("digits(%d) = %d, written it has %d", v, got, want)
			}
		}
	}
}
