package events

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Period units.
const (
	UnitMinute = "minute"
	UnitHour   = "hour"
	UnitDay    = "day"
	UnitWeek   = "week"
	UnitMonth  = "month"
	UnitYear   = "year"
)

// Period modes.
const (
	ModeCalendar = "calendar"  // aligned to the unit in the time zone; weeks start Monday
	ModeFixed    = "fixed"     // boundaries from Anchor
	ModeFirstUse = "first_use" // boundaries from each customer's first counted use
)

// Period is a repeating window: every Count Units, from an anchor. It is shared by quota
// windows and by rating's period tier scope.
//
// Boundary k is anchor + k×(Count×Unit), always computed from the anchor, never by chaining
// windows: months and years keep the anchor's day of month, clamped to the month's last day
// (anchor Jan 31 → Feb 29 → Mar 31 → Apr 30), and days and weeks keep the anchor's local
// time of day across daylight-saving changes (so such a day is 23 or 25 hours long). Minutes
// and hours are exact durations. When a local time of day does not exist (a DST gap) the
// boundary is the instant the clocks jump to; when it occurs twice it is the first one.
type Period struct {
	Unit     string    `json:"unit"`
	Count    int       `json:"count,omitempty"` // default 1
	Mode     string    `json:"mode,omitempty"`  // default calendar
	Anchor   time.Time `json:"anchor,omitzero"` // fixed mode
	TimeZone string    `json:"time_zone,omitempty"`
}

// maxPeriodCount is the largest count of each unit (Normalize).
var maxPeriodCount = map[string]int{UnitMinute: 10000, UnitHour: 10000, UnitDay: 10000, UnitWeek: 5000, UnitMonth: 1200, UnitYear: 100}

// ErrBadPeriod wraps every period validation error.
var ErrBadPeriod = errors.New("invalid period")

// PeriodError names the offending field of a period.
type PeriodError struct{ Field, Msg string }

func (e *PeriodError) Error() string { return e.Field + ": " + e.Msg }
func (e *PeriodError) Unwrap() error { return ErrBadPeriod }

// Normalize fills defaults and checks the period.
func (p Period) Normalize() (Period, error) { return p.normalize(maxPeriodCount) }

// NormalizeStored is Normalize for a period stored before the per-unit limits on count: up to
// 10,000 of any unit, as they were taken then. Rating reads rules' periods so; rejected, a rule
// of 200 years was priced monthly without a word. (Rating leaves out any window that ends past
// year 9999, see rating.ReasonOutOfRange.)
func (p Period) NormalizeStored() (Period, error) { return p.normalize(storedPeriodCount) }

var storedPeriodCount = map[string]int{UnitMinute: 10000, UnitHour: 10000, UnitDay: 10000, UnitWeek: 10000, UnitMonth: 10000, UnitYear: 10000}

func (p Period) normalize(maxPeriodCount map[string]int) (Period, error) {
	switch p.Unit {
	case UnitMinute, UnitHour, UnitDay, UnitWeek, UnitMonth, UnitYear:
	case "":
		return p, &PeriodError{"unit", "unit is required: minute, hour, day, week, month or year"}
	default:
		return p, &PeriodError{"unit", fmt.Sprintf("%q is not one of minute, hour, day, week, month, year", p.Unit)}
	}
	if p.Count == 0 {
		p.Count = 1
	}
	// At most a century a window (10,000 of the short units): a window holding any time
	// allot takes then ends within what RFC 3339 writes (year 9999). A 9,000-year window from
	// 1970 ended in 10970, and the snapshots holding it could not be written.
	if maxCount := maxPeriodCount[p.Unit]; p.Count < 0 || p.Count > maxCount {
		return p, &PeriodError{"count", fmt.Sprintf("count must be between 1 and %d for unit %s", maxCount, p.Unit)}
	}
	if p.Mode == "" {
		p.Mode = ModeCalendar
	}
	if p.TimeZone == "" {
		p.TimeZone = "UTC"
	}
	// "Local" is Go's name for the process's own zone, not an IANA one: two processes, or a
	// replay on another machine, would put one use in different windows.
	if _, err := loadLocation(p.TimeZone); err != nil || p.TimeZone == "Local" {
		return p, &PeriodError{"time_zone", fmt.Sprintf("%q is not an IANA time zone", p.TimeZone)}
	}
	switch p.Mode {
	case ModeCalendar, ModeFirstUse:
		if !p.Anchor.IsZero() {
			return p, &PeriodError{"anchor", "only fixed mode takes an anchor"}
		}
	case ModeFixed:
		if p.Anchor.IsZero() {
			return p, &PeriodError{"anchor", "fixed mode needs an anchor"}
		}
		if !TimeInRange(p.Anchor) {
			return p, &PeriodError{"anchor", TimeRangeMsg}
		}
		p.Anchor = p.Anchor.UTC()
	default:
		return p, &PeriodError{"mode", fmt.Sprintf("%q is not one of calendar, fixed, first_use", p.Mode)}
	}
	return p, nil
}

// location returns the period's zone; Normalize has checked it.
func (p Period) location() *time.Location {
	if p.TimeZone == "" || p.TimeZone == "UTC" {
		return time.UTC
	}
	loc, err := loadLocation(p.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// locations caches time zones by name: time.LoadLocation reads and parses the zone database
// on every call, and window math runs for every rated event and quota decision.
var locations sync.Map // string → *time.Location

func loadLocation(name string) (*time.Location, error) {
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err // not cached: a zone database installed later is then found
	}
	locations.Store(name, loc)
	return loc, nil
}

// CalendarAnchor is the origin calendar windows count from: the start of 1970 (for weeks, the
// first Monday of 1970) in the period's zone.
func (p Period) CalendarAnchor() time.Time {
	loc := p.location()
	if p.Unit == UnitWeek {
		return time.Date(1970, 1, 5, 0, 0, 0, 0, loc)
	}
	return time.Date(1970, 1, 1, 0, 0, 0, 0, loc)
}

// Window returns the half-open window [start, end) that holds t, for the given anchor (the
// period's own for fixed mode, CalendarAnchor for calendar mode, the customer's first use for
// first_use). t may be before the anchor: windows extend backwards the same way.
func (p Period) Window(anchor, t time.Time) (start, end time.Time) {
	k := p.Index(anchor, t)
	return p.Boundary(anchor, k), p.Boundary(anchor, k+1)
}

// WindowAt is Window with the anchor the mode implies; first_use periods need the
// customer's anchor and must call Window.
//
// Calendar minutes and hours are aligned to the local clock of t's day (zones have changed
// their offset by odd amounts over the years, so a 1970 origin would not stay aligned), on
// the days clocks change too (subdayWindow); a count that does not divide the day restarts at
// local midnight.
//
// Windows tile time, so every instant of [start, end) has that same window: WindowAt remembers
// the last window it gave for each of a few periods and answers from it while t is inside. The
// quota decisions, the ledger fold and rating ask about the same few current windows for every
// request and event, and computing one takes zone conversions and date normalizations (~9% of
// the CPU of a quota increment at the projector, BenchmarkLaneIncrements).
func (p Period) WindowAt(t time.Time) (start, end time.Time) {
	if p.TimeZone != "" && p.TimeZone != "UTC" {
		// Zones whose clocks go back across midnight by more than the day has left (a 3-hour
		// fall-back at Casey, 2023) have windows that do not tile there, and an answer from the
		// memo would depend on what was asked before — live and replay could differ.
		return p.windowAt(t)
	}
	slot := &windowCache[p.cacheSlot()]
	if c := slot.Load(); c != nil && c.p == p && !t.Before(c.start) && t.Before(c.end) {
		return c.start, c.end
	}
	start, end = p.windowAt(t)
	slot.Store(&cachedWindow{p: p, start: start, end: end})
	return start, end
}

// cachedWindow is a window WindowAt gave for p. Periods are compared with ==, so an anchor in
// another *time.Location is another period here: a miss, never a wrong answer.
type cachedWindow struct {
	p          Period
	start, end time.Time
}

// windowCache holds a window per slot; periods whose slots collide take turns.
var windowCache [64]atomic.Pointer[cachedWindow]

// cacheSlot spreads periods over windowCache's slots.
func (p Period) cacheSlot() int {
	h := fnv32(p.Unit) ^ fnv32(p.Mode)*31 ^ fnv32(p.TimeZone)*131 ^ uint32(p.Count)*7919 ^ uint32(p.Anchor.Unix())
	return int(h % uint32(len(windowCache)))
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}

// windowAt computes WindowAt.
func (p Period) windowAt(t time.Time) (start, end time.Time) {
	switch {
	case p.Mode == ModeFixed:
		return p.Window(p.Anchor, t)
	case p.Unit == UnitMinute || p.Unit == UnitHour:
		step := int64(max(p.Count, 1)) * 60
		if p.Unit == UnitHour {
			step *= 60
		}
		return subdayWindow(t, p.location(), step)
	default:
		return p.Window(p.CalendarAnchor(), t)
	}
}

// subdayWindow is the calendar window of step seconds (whole minutes) that holds t: the
// boundaries of t's local day are its first instant, its last's end, and every instant whose
// wall clock shows a time of day that is a multiple of step — in both runs of an hour that
// happens twice, and, where clocks jump forward over such a time, the instant of the jump. So
// windows keep to the wall clock after a change of offset (an hour, or Lord Howe's half hour),
// as on any other day, and a step that does not divide the day restarts at midnight.
//
// Offsets are constant between transitions (time.ZoneBounds), so within t's zone period the
// boundaries are a multiple of step away on the wall clock; only when that period starts or
// ends before the candidate does the answer come from the transition, or from the period next
// to it.
func subdayWindow(t time.Time, loc *time.Location, step int64) (start, end time.Time) {
	lt := t.In(loc)
	y, mo, d := lt.Date()
	// The day's first instant, resolved like every boundary (localTime): where clocks jump
	// forward at midnight (America/Havana, America/Santiago, Asia/Beirut) 00:00 does not
	// exist, and time.Date's guess for it can land on the day before.
	first := localTime(y, mo, d, dayStart, loc)
	last := localTime(y, mo, d+1, dayStart, loc)
	midnight := time.Date(y, mo, d, 0, 0, 0, 0, time.UTC).Unix()
	wall := func(u time.Time) int64 { // seconds since 00:00 of t's date, as u's clock shows it
		_, off := u.In(loc).Zone()
		return u.Unix() + int64(off) - midnight
	}
	// period is the zone period holding u, clipped to the day. ZoneBounds is not trusted
	// further than it holds u: past a zone's last listed transition Go derives the bounds
	// from its rule, and on Dec 31 of a leap year gave an end before u (golang/go#81583) —
	// the loop below then never moved.
	period := func(u time.Time) (time.Time, time.Time) {
		ps, pe := u.In(loc).ZoneBounds()
		if ps.IsZero() || ps.Before(first) || ps.After(u) {
			ps = first
		}
		if pe.IsZero() || pe.After(last) || !pe.After(u) {
			pe = last
		}
		return ps, pe
	}
	// jumpBoundary reports whether the transition at u (inside the day) is a boundary: the
	// clock jumps over a multiple of step, or onto one.
	jumpBoundary := func(u time.Time) bool {
		before, after := wall(u.Add(-time.Nanosecond))+1, wall(u) // before: the wall the old offset would show at u
		if after < before {
			return after%step == 0 // clocks went back: u is a boundary when it shows one
		}
		return floorDiv(after, step)*step >= before
	}

	// start: the latest boundary at or before t. A day has a few zone periods at most; the
	// bound on the steps is for data no zone has.
	ok := false
	for u, steps := t, 0; steps < 16; steps++ {
		ps, _ := period(u)
		w := wall(u)
		if cand := time.Unix(u.Unix()-(w-floorDiv(w, step)*step), 0); !cand.Before(ps) {
			start, ok = cand, true
			break
		}
		if ps.Equal(first) || jumpBoundary(ps) {
			start, ok = ps, true
			break
		}
		u = ps.Add(-time.Nanosecond)
	}
	// end: the earliest boundary after t.
	endOK := false
	for u, steps := t, 0; ok && steps < 16; steps++ {
		_, pe := period(u)
		w := wall(u)
		if cand := time.Unix(u.Unix()+(floorDiv(w, step)+1)*step-w, 0); cand.Before(pe) {
			end, endOK = cand, true
			break
		}
		if pe.Equal(last) || jumpBoundary(pe) {
			end, endOK = pe, true
			break
		}
		u = pe
		if w := wall(u); w == floorDiv(w, step)*step {
			end, endOK = u, true
			break
		}
	}
	if ok && endOK && !t.Before(start) && t.Before(end) {
		return start.UTC(), end.UTC()
	}
	// Where the wall clock gives no window holding t — the day's first instant as localTime
	// finds it is after t (Casey's three-hour fall-back across midnight, an offset of odd
	// seconds) — steps of exact length from that first instant, as before wall-clock windows:
	// the window must hold t whatever the zone's data.
	k := floorDiv(t.Unix()-first.Unix(), step)
	start = time.Unix(first.Unix()+k*step, 0)
	end = time.Unix(start.Unix()+step, 0)
	if end.After(last) && last.After(t) {
		end = last
	}
	return start.UTC(), end.UTC()
}

// dayStart is a time of day of 00:00, for localTime.
var dayStart = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// Boundary returns boundary k: anchor + k×(Count×Unit).
func (p Period) Boundary(anchor time.Time, k int64) time.Time {
	if k == 0 {
		return anchor.UTC() // the anchor itself, even at the second of a wall time that happens twice
	}
	n := k * int64(max(p.Count, 1))
	switch p.Unit {
	// In seconds, not a time.Duration: a Duration holds ±292 years, and a boundary further
	// from its anchor (an anchor in 1700, an event dated in it) wrapped around.
	case UnitMinute:
		return time.Unix(anchor.Unix()+n*60, int64(anchor.Nanosecond())).UTC()
	case UnitHour:
		return time.Unix(anchor.Unix()+n*3600, int64(anchor.Nanosecond())).UTC()
	case UnitDay, UnitWeek:
		days := n
		if p.Unit == UnitWeek {
			days *= 7
		}
		a := anchor.In(p.location())
		return localTime(a.Year(), a.Month(), a.Day()+int(days), a, p.location())
	default: // month, year
		months := n
		if p.Unit == UnitYear {
			months *= 12
		}
		a := anchor.In(p.location())
		total := int64(a.Year())*12 + int64(a.Month()-1) + months
		y, m := int(floorDiv(total, 12)), time.Month(floorMod(total, 12)+1)
		d := min(a.Day(), daysIn(y, m))
		return localTime(y, m, d, a, p.location())
	}
}

// localTime is the instant at the anchor's local time of day on y-m-d in loc. Go resolves a
// wall time that falls in a DST gap or overlap in a zone-dependent way; we pin both cases
// down: a gap resolves to the instant after the jump, an overlap to the earlier instant.
func localTime(y int, m time.Month, d int, a time.Time, loc *time.Location) time.Time {
	// The date normalized first (d may be past the month's end, or far past it for day
	// boundaries counted from an anchor): the gap probe below compares dates.
	n := time.Date(y, m, d, 12, 0, 0, 0, time.UTC)
	y, m, d = n.Year(), n.Month(), n.Day()
	t := time.Date(y, m, d, a.Hour(), a.Minute(), a.Second(), a.Nanosecond(), loc)
	if t.Hour() != a.Hour() || t.Minute() != a.Minute() {
		// In a gap: the wall time does not exist. Take the first instant of that date at or
		// after it, which is when clocks jump forward.
		for probe := t.Add(-3 * time.Hour); probe.Before(t.Add(3 * time.Hour)); probe = probe.Add(time.Minute) {
			pl := probe.In(loc)
			if pl.Year() == y && pl.Month() == m && pl.Day() == d && (pl.Hour() > a.Hour() || pl.Hour() == a.Hour() && pl.Minute() >= a.Minute()) {
				return probe.Truncate(time.Minute).UTC()
			}
		}
		return t.UTC()
	}
	// In an overlap the same wall time happens twice; prefer the earlier instant. Clocks go
	// back by an hour in most zones, by 30 minutes on Lord Howe Island and by two hours at
	// Troll: the earliest of those that shows the same wall time is the first.
	for _, back := range [...]time.Duration{2 * time.Hour, time.Hour, 30 * time.Minute} {
		if e := t.Add(-back).In(loc); e.Hour() == t.Hour() && e.Minute() == t.Minute() && e.Second() == t.Second() && e.Day() == t.Day() {
			return t.Add(-back).UTC()
		}
	}
	return t.UTC()
}

// Index returns k such that Boundary(anchor, k) <= t < Boundary(anchor, k+1).
func (p Period) Index(anchor, t time.Time) int64 {
	count := int64(max(p.Count, 1))
	// Seconds between them, not t.Sub: a Duration saturates past ±292 years, and the steps
	// below from so bad an estimate would take about forever.
	secs := t.Unix() - anchor.Unix()
	var k int64
	switch p.Unit {
	case UnitMinute:
		k = floorDiv(floorDiv(secs, 60), count)
	case UnitHour:
		k = floorDiv(floorDiv(secs, 3600), count)
	case UnitDay:
		k = floorDiv(floorDiv(secs, 86400), count)
	case UnitWeek:
		k = floorDiv(floorDiv(secs, 7*86400), count)
	case UnitMonth, UnitYear:
		a, tl := anchor.In(p.location()), t.In(p.location())
		months := int64(tl.Year()-a.Year())*12 + int64(tl.Month()-a.Month())
		if p.Unit == UnitYear {
			months /= 12
		}
		k = floorDiv(months, count)
	}
	// The estimate is within one or two of the answer (DST, month lengths, durations rounded
	// toward zero); step to the exact window.
	for t.Before(p.Boundary(anchor, k)) {
		k--
	}
	for !t.Before(p.Boundary(anchor, k+1)) {
		k++
	}
	return k
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int64) int64 { return a - floorDiv(a, b)*b }

func daysIn(y int, m time.Month) int {
	return time.Date(y, m+1, 0, 0, 0, 0, 0, time.UTC).Day()
}
