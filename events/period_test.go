package events

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

func mustPeriod(t *testing.T, p Period) Period {
	t.Helper()
	n, err := p.Normalize()
	require.NoError(t, err)
	return n
}

func TestBoundariesFromTheAnchor(t *testing.T) {
	tests := []struct {
		name   string
		p      Period
		anchor string
		want   []string // boundaries 0, 1, 2, …
	}{
		{"monthly from Jan 31 clamps and never drifts", Period{Unit: UnitMonth}, "2024-01-31T04:30:00Z",
			[]string{"2024-01-31T04:30:00Z", "2024-02-29T04:30:00Z", "2024-03-31T04:30:00Z", "2024-04-30T04:30:00Z", "2024-05-31T04:30:00Z"}},
		{"yearly from Feb 29", Period{Unit: UnitYear}, "2024-02-29T00:00:00Z",
			[]string{"2024-02-29T00:00:00Z", "2025-02-28T00:00:00Z", "2026-02-28T00:00:00Z", "2027-02-28T00:00:00Z", "2028-02-29T00:00:00Z"}},
		{"every 3 months from a month end", Period{Unit: UnitMonth, Count: 3}, "2023-11-30T12:00:00Z",
			[]string{"2023-11-30T12:00:00Z", "2024-02-29T12:00:00Z", "2024-05-30T12:00:00Z", "2024-08-30T12:00:00Z", "2024-11-30T12:00:00Z"}},
		{"every 3 months from the 31st", Period{Unit: UnitMonth, Count: 3}, "2024-01-31T00:00:00Z",
			[]string{"2024-01-31T00:00:00Z", "2024-04-30T00:00:00Z", "2024-07-31T00:00:00Z", "2024-10-31T00:00:00Z", "2025-01-31T00:00:00Z"}},
		{"Berlin days across spring forward keep local midnight (23 h day)", Period{Unit: UnitDay, TimeZone: "Europe/Berlin"}, "2024-03-30T00:00:00+01:00",
			[]string{"2024-03-29T23:00:00Z", "2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"}},
		{"Berlin days across fall back (25 h day)", Period{Unit: UnitDay, TimeZone: "Europe/Berlin"}, "2024-10-26T00:00:00+02:00",
			[]string{"2024-10-25T22:00:00Z", "2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"}},
		{"New York 02:30 daily: the gap resolves to 03:00 EDT", Period{Unit: UnitDay, TimeZone: "America/New_York"}, "2024-03-09T02:30:00-05:00",
			[]string{"2024-03-09T07:30:00Z", "2024-03-10T07:00:00Z", "2024-03-11T06:30:00Z"}},
		{"New York 01:30 daily: the overlap resolves to the first 01:30", Period{Unit: UnitDay, TimeZone: "America/New_York"}, "2024-11-02T01:30:00-04:00",
			[]string{"2024-11-02T05:30:00Z", "2024-11-03T05:30:00Z", "2024-11-04T06:30:00Z"}},
		{"hours are exact durations", Period{Unit: UnitHour, Count: 6}, "2024-03-31T00:00:00Z",
			[]string{"2024-03-31T00:00:00Z", "2024-03-31T06:00:00Z", "2024-03-31T12:00:00Z"}},
		{"weeks", Period{Unit: UnitWeek, Count: 2}, "2024-12-23T00:00:00Z",
			[]string{"2024-12-23T00:00:00Z", "2025-01-06T00:00:00Z", "2025-01-20T00:00:00Z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPeriod(t, tt.p)
			a := ts(tt.anchor)
			for k, w := range tt.want {
				assert.Equal(t, ts(w), p.Boundary(a, int64(k)), "boundary %d", k)
			}
			// Every boundary's window is [b_k, b_k+1), including the instants around it.
			for k := 0; k+1 < len(tt.want); k++ {
				s, e := p.Window(a, ts(tt.want[k]))
				assert.Equal(t, ts(tt.want[k]), s, "window at boundary %d", k)
				assert.Equal(t, ts(tt.want[k+1]), e)
				s, e = p.Window(a, ts(tt.want[k+1]).Add(-time.Nanosecond))
				assert.Equal(t, ts(tt.want[k]), s, "the instant before boundary %d", k+1)
				assert.Equal(t, ts(tt.want[k+1]), e)
			}
		})
	}
}

func TestCalendarWindows(t *testing.T) {
	tests := []struct {
		name       string
		p          Period
		at         string
		start, end string
	}{
		{"UTC day", Period{Unit: UnitDay}, "2024-05-05T13:00:00Z", "2024-05-05T00:00:00Z", "2024-05-06T00:00:00Z"},
		{"UTC month", Period{Unit: UnitMonth}, "2024-02-29T23:59:59.999Z", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"},
		{"UTC year", Period{Unit: UnitYear}, "2024-07-01T00:00:00Z", "2024-01-01T00:00:00Z", "2025-01-01T00:00:00Z"},
		{"quarter", Period{Unit: UnitMonth, Count: 3}, "2024-05-15T00:00:00Z", "2024-04-01T00:00:00Z", "2024-07-01T00:00:00Z"},
		{"ISO week across a year end starts Monday", Period{Unit: UnitWeek}, "2025-01-01T10:00:00Z", "2024-12-30T00:00:00Z", "2025-01-06T00:00:00Z"},
		{"week on the Sunday before", Period{Unit: UnitWeek}, "2024-12-29T23:59:59Z", "2024-12-23T00:00:00Z", "2024-12-30T00:00:00Z"},
		{"Berlin 23 h day", Period{Unit: UnitDay, TimeZone: "Europe/Berlin"}, "2024-03-31T12:00:00Z", "2024-03-30T23:00:00Z", "2024-03-31T22:00:00Z"},
		{"Berlin 25 h day", Period{Unit: UnitDay, TimeZone: "Europe/Berlin"}, "2024-10-27T12:00:00Z", "2024-10-26T22:00:00Z", "2024-10-27T23:00:00Z"},
		{"New York month", Period{Unit: UnitMonth, TimeZone: "America/New_York"}, "2024-03-01T03:00:00Z", "2024-02-01T05:00:00Z", "2024-03-01T05:00:00Z"},
		{"Kathmandu (+05:45) hour", Period{Unit: UnitHour, TimeZone: "Asia/Kathmandu"}, "2024-05-05T10:20:00Z", "2024-05-05T10:15:00Z", "2024-05-05T11:15:00Z"},
		{"Kathmandu day", Period{Unit: UnitDay, TimeZone: "Asia/Kathmandu"}, "2024-05-05T18:14:59Z", "2024-05-04T18:15:00Z", "2024-05-05T18:15:00Z"},
		{"before 1970", Period{Unit: UnitMonth}, "1969-12-15T00:00:00Z", "1969-12-01T00:00:00Z", "1970-01-01T00:00:00Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPeriod(t, tt.p)
			s, e := p.WindowAt(ts(tt.at))
			assert.Equal(t, ts(tt.start), s)
			assert.Equal(t, ts(tt.end), e)
		})
	}
}

func TestFixedAnchorInTheFuture(t *testing.T) {
	p := mustPeriod(t, Period{Unit: UnitMonth, Mode: ModeFixed, Anchor: ts("2030-01-31T00:00:00Z")})
	s, e := p.WindowAt(ts("2029-12-15T00:00:00Z"))
	assert.Equal(t, ts("2029-11-30T00:00:00Z"), s, "windows extend backwards from a future anchor")
	assert.Equal(t, ts("2029-12-31T00:00:00Z"), e)
}

func TestNormalizePeriod(t *testing.T) {
	p, err := Period{Unit: UnitDay}.Normalize()
	require.NoError(t, err)
	assert.Equal(t, Period{Unit: UnitDay, Count: 1, Mode: ModeCalendar, TimeZone: "UTC"}, p)
	for field, bad := range map[string]Period{
		"unit":      {Unit: "fortnight"},
		"count":     {Unit: UnitDay, Count: -1},
		"mode":      {Unit: UnitDay, Mode: "rolling"},
		"anchor":    {Unit: UnitDay, Mode: ModeFixed},
		"time_zone": {Unit: UnitDay, TimeZone: "Mars/Olympus"},
	} {
		_, err := bad.Normalize()
		var pe *PeriodError
		require.ErrorAs(t, err, &pe, field)
		assert.Equal(t, field, pe.Field)
		assert.ErrorIs(t, err, ErrBadPeriod)
	}
	// At most a century a window: a 9,000-year window from 1970 ends past what RFC 3339 writes.
	for _, bad := range []Period{{Unit: UnitYear, Count: 101}, {Unit: UnitMonth, Count: 1201}, {Unit: UnitWeek, Count: 5001}, {Unit: UnitDay, Count: 10001}} {
		_, err := bad.Normalize()
		var pe *PeriodError
		require.ErrorAs(t, err, &pe, "%+v", bad)
		assert.Equal(t, "count", pe.Field)
	}
	_, err = Period{Unit: UnitYear, Count: 100}.Normalize()
	require.NoError(t, err)
	// Go's "Local" loads (the process's own zone) but is no IANA zone: windows would depend on
	// the machine.
	_, err = Period{Unit: UnitDay, TimeZone: "Local"}.Normalize()
	var pe *PeriodError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, "time_zone", pe.Field)
}

// FuzzWindowsTile: consecutive windows share their boundary (no gap, no overlap), every
// window holds t, and windows are never empty.
func FuzzWindowsTile(f *testing.F) {
	f.Add(int64(1706675400), int64(1709251200), uint8(4), uint8(1), uint8(0))
	f.Add(int64(1711846800), int64(1711846800), uint8(2), uint8(3), uint8(1))
	f.Add(int64(0), int64(-86400*400), uint8(5), uint8(2), uint8(2))
	zones := []string{"UTC", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"}
	units := []string{UnitMinute, UnitHour, UnitDay, UnitWeek, UnitMonth, UnitYear}
	f.Fuzz(func(t *testing.T, anchorSec, atSec int64, unit, count, zone uint8) {
		const span = 200 * 365 * 86400
		if anchorSec < -span || anchorSec > span || atSec < -span || atSec > span {
			return
		}
		p, err := Period{Unit: units[int(unit)%len(units)], Count: 1 + int(count)%12, TimeZone: zones[int(zone)%len(zones)]}.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		anchor, at := time.Unix(anchorSec, 0).UTC(), time.Unix(atSec, 0).UTC()
		s, e := p.Window(anchor, at)
		if at.Before(s) || !at.Before(e) || !s.Before(e) {
			t.Fatalf("%+v anchor %v: window [%v, %v) does not hold %v", p, anchor, s, e, at)
		}
		s2, e2 := p.Window(anchor, e)
		if !s2.Equal(e) || !s2.Before(e2) {
			t.Fatalf("%+v anchor %v: next window [%v, %v) does not start at %v", p, anchor, s2, e2, e)
		}
		s0, e0 := p.Window(anchor, s.Add(-time.Nanosecond))
		if !e0.Equal(s) || !s0.Before(e0) {
			t.Fatalf("%+v anchor %v: previous window [%v, %v) does not end at %v", p, anchor, s0, e0, s)
		}
	})
}

// FuzzWindowAtTiles is FuzzWindowsTile for WindowAt, the calendar windows quotas and rating
// use, in zones whose clocks jump at midnight (where the day's 00:00 does not exist): every
// window holds t, is not empty, and the next one starts where it ends.
func FuzzWindowAtTiles(f *testing.F) {
	f.Add(int64(1647144600), uint8(1), uint8(0), uint8(0)) // 2022-03-12 23:10 in Havana: midnight is in the gap
	f.Add(int64(1662260400), uint8(0), uint8(14), uint8(1))
	f.Add(int64(1711846800), uint8(1), uint8(5), uint8(3))
	zones := []string{"America/Havana", "America/Santiago", "Asia/Beirut", "America/Asuncion", "Europe/Berlin", "America/New_York", "Asia/Kathmandu", "Australia/Lord_Howe"}
	units := []string{UnitMinute, UnitHour, UnitDay, UnitWeek, UnitMonth, UnitYear}
	f.Fuzz(func(t *testing.T, atSec int64, unit, count, zone uint8) {
		const span = 100 * 365 * 86400
		if atSec < -span || atSec > span {
			return
		}
		p, err := Period{Unit: units[int(unit)%len(units)], Count: 1 + int(count)%90, TimeZone: zones[int(zone)%len(zones)]}.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		at := time.Unix(atSec, 0).UTC()
		checkTiles(t, p, at)
		// The same period anchored at a fixed instant somewhere in the span, before or after at.
		fixed, err := Period{Unit: p.Unit, Count: p.Count, Mode: ModeFixed, Anchor: time.Unix(atSec/7*3+int64(count)*4099, 0).UTC(), TimeZone: p.TimeZone}.Normalize()
		if err != nil {
			t.Fatal(err)
		}
		checkTiles(t, fixed, at)
	})
}

// checkTiles checks that p's window at holds it, that the next window starts where it ends,
// and that every instant of it has that same window.
func checkTiles(t *testing.T, p Period, at time.Time) {
	t.Helper()
	{
		s, e := p.WindowAt(at)
		if at.Before(s) || !at.Before(e) || !s.Before(e) {
			t.Fatalf("%+v: window [%v, %v) does not hold %v", p, s, e, at)
		}
		s2, e2 := p.WindowAt(e)
		if !s2.Equal(e) || !s2.Before(e2) {
			t.Fatalf("%+v: next window [%v, %v) does not start at %v (window of %v: [%v, %v))", p, s2, e2, e, at, s, e)
		}
		// Every instant of the window has that same window (WindowAt memoizes on this), down
		// to the first and the last nanosecond, with nothing of the answer's form changed.
		for _, in := range []time.Time{s, e.Add(-time.Nanosecond), s.Add(e.Sub(s) / 3), s.Add(e.Sub(s) * 2 / 3)} {
			windowCache = [len(windowCache)]atomic.Pointer[cachedWindow]{}
			if s3, e3 := p.WindowAt(in); s3 != s || e3 != e {
				t.Fatalf("%+v: the window of %v is [%v, %v), but that of %v in it is [%v, %v)", p, at, s, e, in, s3, e3)
			}
		}
	}
}

// The day after the last of a month, where midnight is in a gap: Asunción jumped from 00:00
// to 01:00 on 2023-10-01. And a calendar day there (boundaries counted in days from 1970).
func TestWindowsAcrossAMonthEndGap(t *testing.T) {
	p, err := Period{Unit: UnitHour, TimeZone: "America/Asuncion"}.Normalize()
	require.NoError(t, err)
	at := time.Date(2023, 10, 1, 3, 30, 0, 0, time.UTC) // 23:30 on the 30th, -04:00
	s, e := p.WindowAt(at)
	assert.Equal(t, time.Date(2023, 10, 1, 3, 0, 0, 0, time.UTC), s)
	assert.Equal(t, time.Date(2023, 10, 1, 4, 0, 0, 0, time.UTC), e, "the 1st starts at 01:00 -03:00")
	day, err := Period{Unit: UnitDay, TimeZone: "America/Havana"}.Normalize()
	require.NoError(t, err)
	s, e = day.WindowAt(time.Date(2024, 3, 10, 12, 0, 0, 0, time.UTC)) // Havana jumped at midnight that day
	assert.Equal(t, time.Date(2024, 3, 10, 5, 0, 0, 0, time.UTC), s, "01:00 -04:00, the day's first instant")
	assert.Equal(t, time.Date(2024, 3, 11, 4, 0, 0, 0, time.UTC), e)
}

func TestWindowAtWhereMidnightIsInAGap(t *testing.T) {
	// Havana jumped from 00:00 to 01:00 on 2022-03-13: that day starts at 01:00 CDT (05:00Z).
	p, err := Period{Unit: UnitHour, TimeZone: "America/Havana"}.Normalize()
	require.NoError(t, err)
	at := time.Date(2022, 3, 13, 4, 10, 0, 0, time.UTC) // 23:10 CST on the 12th
	s, e := p.WindowAt(at)
	assert.Equal(t, time.Date(2022, 3, 13, 4, 0, 0, 0, time.UTC), s)
	assert.Equal(t, time.Date(2022, 3, 13, 5, 0, 0, 0, time.UTC), e)
	s, e = p.WindowAt(e)
	assert.Equal(t, time.Date(2022, 3, 13, 5, 0, 0, 0, time.UTC), s, "the 13th's first hour starts at its first instant")
	assert.Equal(t, time.Date(2022, 3, 13, 6, 0, 0, 0, time.UTC), e)
}

// BenchmarkWindowAt: window math runs for every rated event and quota decision; a zone other
// than UTC must not cost a zone-database read each time.
func BenchmarkWindowAt(b *testing.B) {
	t := time.Date(2026, 3, 29, 1, 30, 0, 0, time.UTC)
	for _, tz := range []string{"UTC", "Europe/Berlin"} {
		p, err := Period{Unit: UnitDay, TimeZone: tz}.Normalize()
		if err != nil {
			b.Fatal(err)
		}
		b.Run(tz, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				p.WindowAt(t)
			}
		})
	}
}

// WindowAt answers from the window it remembers only for instants inside it, and only for the
// same period.
func TestWindowAtRemembersOnlyInside(t *testing.T) {
	hour, err := Period{Unit: UnitHour}.Normalize()
	require.NoError(t, err)
	berlin, err := Period{Unit: UnitHour, Count: 2, TimeZone: "Europe/Berlin"}.Normalize()
	require.NoError(t, err)
	at := time.Date(2026, 3, 29, 0, 30, 0, 0, time.UTC) // 01:30 in Berlin; clocks jump at 02:00 local
	for _, in := range []time.Time{at, at.Add(30 * time.Minute), at.Add(-30*time.Minute - time.Nanosecond), at.Add(29*time.Minute + 59*time.Second), at, at.Add(90 * time.Minute)} {
		for _, p := range []Period{hour, berlin} {
			s, e := p.WindowAt(in)
			ws, we := p.windowAt(in)
			assert.Equal(t, ws, s, "%v at %v", p, in)
			assert.Equal(t, we, e, "%v at %v", p, in)
			assert.True(t, !in.Before(s) && in.Before(e), "%v at %v: [%v, %v)", p, in, s, e)
		}
	}
}

// Windows far from their anchor (more than the ±292 years a time.Duration holds) are computed,
// and hold their instant: an hourly period anchored in 1700, a use dated in 1700 against a
// first_use anchor of today, calendar days in year 1. Boundaries were computed with Durations
// that wrapped around, and the steps to the exact window never ended.
func TestWindowsFarFromTheirAnchor(t *testing.T) {
	far, now := time.Date(1700, 1, 1, 0, 30, 0, 0, time.UTC), time.Date(2026, 6, 1, 12, 30, 0, 0, time.UTC)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for _, c := range []struct {
			p          Period
			anchor, at time.Time
		}{
			{Period{Unit: UnitHour, Mode: ModeFixed, Anchor: far}, far, now},
			{Period{Unit: UnitMinute, Count: 5, Mode: ModeFixed, Anchor: far}, far, now},
			{Period{Unit: UnitHour, Mode: ModeFirstUse}, now, far},
			{Period{Unit: UnitDay, Mode: ModeFirstUse, TimeZone: "Europe/Berlin"}, now, time.Date(1, 1, 2, 12, 0, 0, 0, time.UTC)},
			{Period{Unit: UnitWeek, Mode: ModeFirstUse}, now, time.Date(1, 1, 2, 12, 0, 0, 0, time.UTC)},
			{Period{Unit: UnitDay, TimeZone: "Europe/Berlin"}, time.Time{}, time.Date(1, 1, 2, 12, 0, 0, 0, time.UTC)},
			{Period{Unit: UnitHour}, time.Time{}, time.Date(9000, 1, 2, 12, 0, 0, 0, time.UTC)},
		} {
			p, err := c.p.Normalize()
			if !assert.NoError(t, err) {
				continue
			}
			var s, e time.Time
			if p.Mode == ModeFirstUse {
				s, e = p.Window(c.anchor, c.at)
			} else {
				s, e = p.WindowAt(c.at)
			}
			assert.True(t, !c.at.Before(s) && c.at.Before(e), "%+v: [%v, %v) does not hold %v", p, s, e, c.at)
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("window math did not finish: it loops on instants far from the anchor")
	}
}

// A boundary at a wall time that happens twice (clocks going back) is its first instant, also
// where they go back by 30 minutes (Lord Howe Island) or two hours (Troll): only a one-hour
// shift was looked for, and these got the later instant.
func TestOverlapBoundaryIsTheFirstInstant(t *testing.T) {
	for _, c := range []struct {
		zone            string
		y, m, d, h, min int
	}{
		{"Australia/Lord_Howe", 2024, 4, 7, 1, 45}, // 02:00 -> 01:30: 01:30-02:00 twice
		{"Antarctica/Troll", 2024, 10, 27, 2, 0},   // 03:00 -> 01:00: 01:00-03:00 twice
	} {
		loc, _ := time.LoadLocation(c.zone)
		anchor := time.Date(c.y, time.Month(c.m), c.d-10, c.h, c.min, 0, 0, loc)
		p, _ := Period{Unit: UnitDay, Mode: ModeFixed, Anchor: anchor, TimeZone: c.zone}.Normalize()
		b := p.Boundary(p.Anchor, 10)
		// every instant with that local wall time on that date
		var first time.Time
		for x := b.Add(-4 * time.Hour); x.Before(b.Add(4 * time.Hour)); x = x.Add(time.Minute) {
			l := x.In(loc)
			if l.Day() == c.d && l.Hour() == c.h && l.Minute() == c.min {
				first = x
				break
			}
		}
		if !b.Equal(first) {
			t.Errorf("%s: boundary at local %02d:%02d on the overlap day is %v (%v local); the first instant is %v", c.zone, c.h, c.min, b.UTC(), b.In(loc), first.UTC())
		}
	}
}

// Boundary 0 is the anchor itself, even when the anchor is the second instant of a wall time
// that happens twice (01:30 after New York's clocks went back): it was the first, an hour
// before the anchor, and the window of a first use at that instant began before it.
func TestBoundaryZeroIsTheAnchor(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	second := time.Date(2025, 11, 2, 6, 30, 0, 0, time.UTC) // 01:30 EST, after 01:30 EDT
	require.Equal(t, 1, second.In(ny).Hour())
	p, err := Period{Unit: UnitDay, Mode: ModeFirstUse, TimeZone: "America/New_York"}.Normalize()
	require.NoError(t, err)
	s, e := p.Window(second, second)
	assert.Equal(t, second, s)
	assert.Equal(t, time.Date(2025, 11, 3, 6, 30, 0, 0, time.UTC), e, "01:30 EST the next day")
}

// Calendar hours and minutes keep to the wall clock on the days clocks change, as on any other
// day: after Lord Howe's half-hour shift the hour still starts at :00 (it ran :30 to :30 for
// the rest of the day), 2-hour windows in New York still start at even hours (they ran 11:00
// to 13:00), and the hour that happens twice is two windows.
func TestCalendarHoursKeepToTheWallClockAcrossDST(t *testing.T) {
	for _, c := range []struct {
		zone           string
		unit           string
		count          int
		at, start, end string
	}{
		{"Australia/Lord_Howe", UnitHour, 1, "2024-10-06T05:10:00+11:00", "2024-10-06T05:00:00+11:00", "2024-10-06T06:00:00+11:00"},
		{"Australia/Lord_Howe", UnitHour, 1, "2024-04-07T05:10:00+10:30", "2024-04-07T05:00:00+10:30", "2024-04-07T06:00:00+10:30"},
		// Lord Howe goes from 02:00 +10:30 to 02:30 +11:00: the 02:00 hour is half an hour long.
		{"Australia/Lord_Howe", UnitHour, 1, "2024-10-06T02:40:00+11:00", "2024-10-06T02:30:00+11:00", "2024-10-06T03:00:00+11:00"},
		{"Australia/Lord_Howe", UnitHour, 1, "2024-10-06T01:40:00+10:30", "2024-10-06T01:00:00+10:30", "2024-10-06T02:30:00+11:00"},
		{"America/New_York", UnitHour, 2, "2024-03-10T12:30:00-04:00", "2024-03-10T12:00:00-04:00", "2024-03-10T14:00:00-04:00"},
		{"America/New_York", UnitHour, 2, "2024-11-03T12:30:00-05:00", "2024-11-03T12:00:00-05:00", "2024-11-03T14:00:00-05:00"},
		// Spring forward at 02:00: the 00:00-02:00 window ends at the jump, and 03:00 EDT starts the next.
		{"America/New_York", UnitHour, 2, "2024-03-10T01:30:00-05:00", "2024-03-10T00:00:00-05:00", "2024-03-10T03:00:00-04:00"},
		{"America/New_York", UnitHour, 2, "2024-03-10T03:30:00-04:00", "2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00"},
		// Fall back: 01:00-02:00 happens twice, each its own window.
		{"America/New_York", UnitHour, 1, "2024-11-03T01:30:00-04:00", "2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00"},
		{"America/New_York", UnitHour, 1, "2024-11-03T01:30:00-05:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"},
		{"America/New_York", UnitMinute, 30, "2024-11-03T01:40:00-05:00", "2024-11-03T01:30:00-05:00", "2024-11-03T02:00:00-05:00"},
		{"Europe/Berlin", UnitMinute, 45, "2024-03-31T03:20:00+02:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:45:00+02:00"},
	} {
		p, err := Period{Unit: c.unit, Count: c.count, TimeZone: c.zone}.Normalize()
		require.NoError(t, err)
		s, e := p.WindowAt(ts(c.at))
		assert.Equal(t, ts(c.start), s, "%s %d %s at %s", c.zone, c.count, c.unit, c.at)
		assert.Equal(t, ts(c.end), e, "%s %d %s at %s", c.zone, c.count, c.unit, c.at)
	}
}

// Wall-clock windows hold their instant whatever the zone data: on Dec 31 of a leap year Go's
// ZoneBounds gave an end before the instant past a zone's last listed transition, and the
// window's end loop never moved (a 45-minute window in New York); Casey's three-hour fall-back
// across midnight and Monrovia's odd-second offset gave a day's first instant after the
// instant, and windows that did not hold it.
func TestSubdayWindowsHoldTheirInstant(t *testing.T) {
	for _, c := range []struct {
		zone, unit string
		count      int
		at         time.Time
	}{
		{"America/New_York", UnitMinute, 45, time.Date(2040, 12, 31, 0, 11, 0, 0, time.UTC)},
		{"America/New_York", UnitHour, 1, time.Date(2040, 12, 31, 12, 0, 0, 0, time.UTC)},
		{"America/New_York", UnitMinute, 45, time.Date(2024, 12, 31, 0, 11, 0, 0, time.UTC)},
		{"Europe/Berlin", UnitHour, 1, time.Date(2028, 12, 31, 12, 0, 0, 0, time.UTC)},
		{"Antarctica/Casey", UnitHour, 1, time.Date(2010, 3, 4, 13, 6, 57, 0, time.UTC)},
		{"Antarctica/Casey", UnitMinute, 45, time.Date(2010, 3, 4, 13, 6, 57, 0, time.UTC)},
		{"Africa/Monrovia", UnitMinute, 1, time.Date(1972, 1, 7, 0, 44, 40, 0, time.UTC)},
		{"America/Lima", UnitMinute, 1, time.Date(1908, 7, 28, 5, 8, 36, 0, time.UTC)},
	} {
		p, err := Period{Unit: c.unit, Count: c.count, TimeZone: c.zone}.Normalize()
		require.NoError(t, err)
		done := make(chan [2]time.Time, 1)
		go func() { s, e := p.WindowAt(c.at); done <- [2]time.Time{s, e} }()
		select {
		case w := <-done:
			assert.True(t, !c.at.Before(w[0]) && c.at.Before(w[1]), "%s %d %s at %s: [%s, %s)", c.zone, c.count, c.unit, c.at, w[0], w[1])
		case <-time.After(5 * time.Second):
			t.Fatalf("%s %d %s at %s: WindowAt does not return", c.zone, c.count, c.unit, c.at)
		}
	}
}
