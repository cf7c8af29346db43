package main

import "testing"

func TestGCHeapFloor(t *testing.T) {
	for _, c := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"", defaultGCHeapFloor, false},
		{"off", 0, false},
		{"0", 0, false},
		{"1048576", 1 << 20, false},
		{"512KiB", 512 << 10, false},
		{"64MiB", 64 << 20, false},
		{" 2 GiB ", 2 << 30, false},
		{"100B", 100, false},
		{"64MB", 0, true},
		{"-1MiB", 0, true},
		{"1.5GiB", 0, true},
		{"MiB", 0, true},
		{"99999999999GiB", 0, true},
	} {
		got, err := gcHeapFloor(c.in)
		if c.bad {
			if err == nil {
				t.Errorf("gcHeapFloor(%q) = %d, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("gcHeapFloor(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
}
