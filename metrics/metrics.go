package metrics

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Registry holds metric families.
type Registry struct {
	mu       sync.Mutex
	families map[string]*family
}

type family struct {
	name, help, kind string
	series           map[string]func() float64 // label string → value
	hists            map[string]*Histogram
}

// New returns an empty registry.
func New() *Registry { return &Registry{families: map[string]*family{}} }

func (r *Registry) fam(name, help, kind string) *family {
	r.mu.Lock()
	defer r.mu.Unlock()
	f, ok := r.families[name]
	if !ok {
		f = &family{name: name, help: help, kind: kind, series: map[string]func() float64{}, hists: map[string]*Histogram{}}
		r.families[name] = f
	}
	return f
}

// CounterFunc registers a counter whose value fn returns. labels are name/value pairs.
func (r *Registry) CounterFunc(name, help string, fn func() float64, labels ...string) {
	f := r.fam(name, help, "counter")
	r.mu.Lock()
	f.series[labelString(labels)] = fn
	r.mu.Unlock()
}

// GaugeFunc registers a gauge whose value fn returns.
func (r *Registry) GaugeFunc(name, help string, fn func() float64, labels ...string) {
	f := r.fam(name, help, "gauge")
	r.mu.Lock()
	f.series[labelString(labels)] = fn
	r.mu.Unlock()
}

// Counter registers and returns a counter.
func (r *Registry) Counter(name, help string, labels ...string) *atomic.Int64 {
	c := new(atomic.Int64)
	r.CounterFunc(name, help, func() float64 { return float64(c.Load()) }, labels...)
	return c
}

// DefaultBuckets suit request latencies from tens of microseconds to seconds.
var DefaultBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram counts observations (seconds) into fixed buckets.
type Histogram struct {
	bounds []float64
	counts []atomic.Uint64
	count  atomic.Uint64
	sumNs  atomic.Int64
}

// Histogram returns the histogram for the given labels, creating it on first use.
func (r *Registry) Histogram(name, help string, labels ...string) *Histogram {
	f := r.fam(name, help, "histogram")
	ls := labelString(labels)
	r.mu.Lock()
	defer r.mu.Unlock()
	h, ok := f.hists[ls]
	if !ok {
		h = &Histogram{bounds: DefaultBuckets, counts: make([]atomic.Uint64, len(DefaultBuckets))}
		f.hists[ls] = h
	}
	return h
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	s := d.Seconds()
	for i, b := range h.bounds {
		if s <= b {
			h.counts[i].Add(1)
			break
		}
	}
	h.count.Add(1)
	h.sumNs.Add(int64(d))
}

// WriteTo writes every family in the text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	names := make([]string, 0, len(r.families))
	for n := range r.families {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		f := r.families[n]
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, f.help, f.name, f.kind)
		for _, ls := range sortedKeys(f.series) {
			fmt.Fprintf(&b, "%s%s %s\n", f.name, braces(ls), formatFloat(f.series[ls]()))
		}
		for _, ls := range sortedKeys(f.hists) {
			h := f.hists[ls]
			var cum uint64
			for i, bound := range h.bounds {
				cum += h.counts[i].Load()
				fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, braces(joinLabels(ls, `le="`+formatFloat(bound)+`"`)), cum)
			}
			total := h.count.Load()
			fmt.Fprintf(&b, "%s_bucket%s %d\n", f.name, braces(joinLabels(ls, `le="+Inf"`)), total)
			fmt.Fprintf(&b, "%s_sum%s %s\n", f.name, braces(ls), formatFloat(float64(h.sumNs.Load())/1e9))
			fmt.Fprintf(&b, "%s_count%s %d\n", f.name, braces(ls), total)
		}
	}
	r.mu.Unlock()
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func labelString(pairs []string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		parts = append(parts, pairs[i]+`="`+escape(pairs[i+1])+`"`)
	}
	return strings.Join(parts, ",")
}

func joinLabels(a, b string) string {
	if a == "" {
		return b
	}
	return a + "," + b
}

func braces(ls string) string {
	if ls == "" {
		return ""
	}
	return "{" + ls + "}"
}

func escape(v string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(v)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}
