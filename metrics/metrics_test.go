package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTextFormat(t *testing.T) {
	r := New()
	c := r.Counter("b_total", "B things.", "kind", `q"uote`)
	c.Add(3)
	r.GaugeFunc("a_gauge", "A gauge.", func() float64 { return 1.5 })
	h := r.Histogram("c_seconds", "C latency.", "route", "/x")
	h.Observe(300 * time.Microsecond)
	h.Observe(2 * time.Second)
	var b strings.Builder
	_, err := r.WriteTo(&b)
	require.NoError(t, err)
	out := b.String()
	assert.True(t, strings.Index(out, "a_gauge") < strings.Index(out, "b_total"), "families are sorted")
	assert.Contains(t, out, "# TYPE b_total counter\nb_total{kind=\"q\\\"uote\"} 3\n")
	assert.Contains(t, out, "a_gauge 1.5\n")
	assert.Contains(t, out, `c_seconds_bucket{route="/x",le="0.00025"} 0`)
	assert.Contains(t, out, `c_seconds_bucket{route="/x",le="0.0005"} 1`)
	assert.Contains(t, out, `c_seconds_bucket{route="/x",le="2.5"} 2`)
	assert.Contains(t, out, `c_seconds_bucket{route="/x",le="+Inf"} 2`)
	assert.Contains(t, out, `c_seconds_count{route="/x"} 2`)
	assert.Contains(t, out, `c_seconds_sum{route="/x"} 2.0003`)
	var again strings.Builder
	r.WriteTo(&again)
	assert.Equal(t, out, again.String(), "deterministic")
}
