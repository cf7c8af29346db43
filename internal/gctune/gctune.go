// Package gctune keeps the garbage collector's heap goal at or above a floor.
//
// Go collects when the heap reaches live × (1 + GOGC/100). allot's live heap is small until
// it holds many customers (a few MiB for the first thousand), while a node answering 20,000
// checks a second allocates ~90 MB/s in net/http alone: with the goal a few times a small live
// heap, that is a collection every fraction of a second, and on two cores each one takes the
// CPU the requests in flight need — the checks' p99 was two to three times that of /healthz
// for no other reason. A floor on the goal trades memory the process may use anyway for far
// fewer collections, and costs nothing once the live heap is large (the goal is then above the
// floor and GOGC alone sets it). This is the dynamic GOGC of Uber's tuner, reduced to a floor;
// a memory limit (GOMEMLIMIT) still wins over it, as it wins over GOGC.
//
// After every collection the tuner reads the live heap and sets GOGC to the larger of the
// base percentage and the one that puts the next goal at the floor.
package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// heapMinimum is the runtime's smallest goal at GOGC=100 (it scales with GOGC): below it the
// goal is heapMinimum × GOGC/100, not live × (1 + GOGC/100).
const heapMinimum = 4 << 20

// Percent is the GOGC that puts the goal after a collection that left live bytes at floor,
// and never below base.
func Percent(live, floor uint64, base int) int {
	live = max(live, heapMinimum)
	if floor <= live {
		return base
	}
	// goal = live × (1 + p/100) = floor; in float64, as floor × 100 may not fit a uint64.
	p := min(float64(floor-live)*100/float64(live), 1<<20)
	return max(base, int(p))
}

// Tuner keeps the heap goal at or above its floor until stopped.
type Tuner struct {
	floor   uint64
	base    int
	stopped atomic.Bool
	mu      sync.Mutex // adjust and Stop, so a late adjust never undoes Stop
	sample  []metrics.Sample
	applied atomic.Int64 // the GOGC last set, for tests and logs
}

// Start sets GOGC from base and floor now and after every collection. floor 0 or base < 0
// (GOGC=off) returns nil: nothing to tune.
func Start(floor uint64, base int) *Tuner {
	if floor == 0 || base < 0 {
		return nil
	}
	t := &Tuner{floor: floor, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.adjust()
	t.arm()
	return t
}

// Stop restores the base percentage; the hook lapses at the next collection.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(t.base)
	t.applied.Store(int64(t.base))
}

// Applied is the GOGC the tuner set last.
func (t *Tuner) Applied() int { return int(t.applied.Load()) }

// sentinel is garbage the moment it is armed: its finalizer runs once per collection cycle.
// It holds a pointer so it is not a tiny allocation (those share blocks and may never be
// finalized).
type sentinel struct{ _ *byte }

func (t *Tuner) arm() {
	runtime.SetFinalizer(&sentinel{}, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

// adjust runs on the finalizer goroutine, one collection at a time.
func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	var live uint64
	if t.sample[0].Value.Kind() == metrics.KindUint64 {
		live = t.sample[0].Value.Uint64()
	}
	p := Percent(live, t.floor, t.base)
	if int64(p) != t.applied.Load() {
		debug.SetGCPercent(p)
		t.applied.Store(int64(p))
	}
}
