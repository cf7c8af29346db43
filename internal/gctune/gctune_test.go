package gctune

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPercent(t *testing.T) {
	const MiB = 1 << 20
	for _, c := range []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"live above the floor keeps the base", 512 * MiB, 256 * MiB, 200, 200},
		{"live at the floor keeps the base", 256 * MiB, 256 * MiB, 200, 200},
		{"goal lands on the floor", 64 * MiB, 256 * MiB, 100, 300},
		{"never below the base", 128 * MiB, 256 * MiB, 200, 200},
		{"a live heap under the runtime's minimum counts as the minimum", 1 * MiB, 256 * MiB, 200, 6300},
		{"no live heap at all", 0, 256 * MiB, 200, 6300},
		{"absurd floors are capped", 4 * MiB, 1 << 62, 100, 1 << 20},
	} {
		if got := Percent(c.live, c.floor, c.base); got != c.want {
			t.Errorf("%s: Percent(%d, %d, %d) = %d, want %d", c.name, c.live, c.floor, c.base, got, c.want)
		}
	}
}

var sink []byte

// collections allocates total bytes of garbage in small pieces and returns how many
// collections ran meanwhile.
func collections(total int) uint32 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for n := 0; n < total; n += 4096 {
		sink = make([]byte, 4096)
	}
	runtime.ReadMemStats(&after)
	return after.NumGC - before.NumGC
}

func TestTunerCollectsLessWithAFloor(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	const total = 1 << 30
	without := collections(total)

	tuner := Start(128<<20, 100)
	defer tuner.Stop()
	with := collections(total)
	// Without a floor the goal is a few MiB over this test's tiny live heap: hundreds of
	// collections. With a 128 MiB floor, about 1 GiB / 128 MiB.
	if without < 50 {
		t.Fatalf("%d collections without the tuner: the test no longer measures anything", without)
	}
	t.Logf("%d collections without the tuner, %d with it", without, with)
	if with > 20 {
		t.Errorf("%d collections with a 128 MiB floor (%d without), want at most 20", with, without)
	}
	if tuner.Applied() <= 100 {
		t.Errorf("tuner last applied GOGC=%d, want above the base of 100", tuner.Applied())
	}
	tuner.Stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("after Stop GOGC is %d, want the base 100", got)
	}
}

func TestStartWithoutFloorOrWithGCOffDoesNothing(t *testing.T) {
	if Start(0, 100) != nil || Start(1<<30, -1) != nil {
		t.Fatal("Start tuned with no floor or with GOGC=off")
	}
	var nilTuner *Tuner
	nilTuner.Stop() // safe
}
