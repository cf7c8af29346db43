package events

import (
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
