package ingest

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A quantity rating can never rate (more than events.MaxQuantityDigits digits either side of
// the point) is a 400 naming the property at ingest, not accepted and silently unrated.
func TestIngestAcceptsQuantitiesRatingRefuses(t *testing.T) {
	long := strings.Repeat("9", 200)
	require.False(t, events.MustDecimal(long).SaneQuantity())
	cands, rejs, p := Parse(scope, MediaJSON, []byte(`[{"id":"e","type":"llm","customer":"c","data":{"tokens":"`+long+`"}}]`), meters, now)
	require.Nil(t, p)
	assert.Len(t, cands, 0, "an unratable quantity is refused where the sender hears it")
	require.Len(t, rejs, 1)
	assert.Equal(t, "data.tokens", rejs[0].Problem.Field)
}
