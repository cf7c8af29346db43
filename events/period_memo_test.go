package events

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Where windows do not tile time (a 3-hour fall-back across midnight: Antarctica/Casey,
// 2023-03-09) the window WindowAt answers for an instant does not depend on what was asked
// before it: the memo serves UTC periods only (it made the answer process history, so a live
// fold and a replay could disagree).
func TestWindowAtDoesNotDependOnHistory(t *testing.T) {
	p := Period{Unit: UnitHour, Count: 5, Mode: ModeCalendar, TimeZone: "Antarctica/Casey"}
	loc, err := time.LoadLocation(p.TimeZone)
	if err != nil {
		t.Fatal(err) // the zone database is part of the set-up, as for every zone test here
	}
	at := time.Date(2023, 3, 9, 0, 0, 35, 0, time.FixedZone("+11", 11*3600)).UTC()
	windowCache[p.cacheSlot()].Store(nil)
	s1, e1 := p.WindowAt(at) // asked cold
	windowCache[p.cacheSlot()].Store(nil)
	p.WindowAt(at.Add(-time.Hour)) // an hour earlier asked first
	s2, e2 := p.WindowAt(at)
	assert.Equal(t, s1.In(loc).String()+" "+e1.In(loc).String(), s2.In(loc).String()+" "+e2.In(loc).String(), "one instant, one window")
}
