package rating

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/allot-dev/allot/events"
)

// Config is what rating needs of the configuration in force.
type Config interface {
	MetersFor(scope events.Scope, eventType string) []events.Meter
	RulesForMeter(scope events.Scope, meter string) []events.RuleHistory
	QuotasForMeter(scope events.Scope, meter string) []events.Quota
}

// Unrated reasons.
const (
	ReasonNoRule   = "no_rule"   // the event is metered but no rule version was in force at its time
	ReasonBadValue = "bad_value" // the meter's value property is missing or not a decimal
	ReasonOverflow = "overflow"  // the price does not fit the ledger's integer range
	// ReasonTooLate: the event belongs to a period window older than the maxWindows rating
	// keeps for its (customer, rule), and its price depends on that window's other events.
	ReasonTooLate = "too_late"
	// ReasonOutOfRange: the event's period window starts before year 1 (a period of several
	// years counted back from 1970 to an event in year 2): its debit could not be written.
	ReasonOutOfRange = "out_of_range"
)

// Output is what rating one event produced. Debits are in (meter key, rule key) order, which
// is also their RuleIndex order. Metered is false when no meter counts the event.
type Output struct {
	Debits  []events.UsageDebited
	Quotas  []events.QuotaUse // use of quotas on the event's count and sum meters
	Unrated *events.UsageUnrated
	Reasons []string // one per unrated meter, parallel to Unrated.Meters
	Metered bool
}

// maxWindows is how many recent windows are kept per (customer, rule): an event up to that
// many periods late still finds its window's quantity. One later than that is priced alone
// when its price does not depend on the period's other events (per-unit without packages
// over a sum or count meter) and otherwise written as unrated, too_late — never priced as
// if its period had been empty (that charged a graduated rule's first tiers again).
//
// A window is its [Start, End): the versions of a rule share the windows of their period,
// so a new version with the same period prices on the period's quantity so far, and one with
// another period counts its own windows from its first event (the quantity of a daily
// version's days is not a month's). The windows kept are the ones that end last: a month
// begun before three days of the daily version still ends after them.
const maxWindows = 3

type accKey struct {
	Product, Env, Customer, Rule string
}

type window struct {
	Start, End time.Time // End zero: read from a snapshot that did not keep it (format 1)
	Q          events.Decimal
	Seen       map[string]struct{} // unique_count values seen in the window
	// LatestAt is the event time of the value Q holds, for latest meters: the latest by event
	// time (then stream order), as analytics has it — an event arriving late with an older
	// time does not replace it.
	LatestAt time.Time

	// The price of Q under rule version qVersion, when known: the next event's "before"
	// price is this event's "after" price, so each event prices one quantity, not two.
	// Not saved: a restored state prices afresh.
	qCost    events.Credits
	qVersion int
}

type acc struct {
	Anchor  time.Time // first_use periods: the first counted use
	Windows []window  // ascending by (Start, End)

	// The window the last event fell in, for the period it was computed with: consecutive
	// events of a customer mostly share one. Not saved.
	last struct {
		period     events.Period
		start, end time.Time
	}
}

// State is rating's fold: per (customer, rule) the quantity of the recent period windows,
// and the usage stream sequence it covers.
type State struct {
	Seq uint64
	// ConfigSeq is the config sequence whose meters, rule versions and quotas rate the events
	// after Seq (Worker.Source), when ConfigKnown (not with a fixed configuration, nor in a
	// snapshot from before it was kept).
	ConfigSeq   uint64
	ConfigKnown bool
	// NoIDs leaves the ids of debits and unrated events out of Rate's output, for a fold that
	// keeps only the state (Rebuild): they are hashes that nothing in the state depends on.
	NoIDs bool
	// Reuse makes what RateMessage and Rate return valid only until the next call: the event's
	// Data, and the output's Debits, Quotas and their periods, are the same memory each time,
	// and the event's id and source are the message body's bytes
	// (events.UsageDecoder.Transient); what the state keeps of an event (a unique value) it
	// copies. For a fold done with each message before it rates the next (Rebuild): they were
	// most of what rating a message allocated.
	Reuse    bool
	debits   []events.UsageDebited // Reuse's
	quotas   []events.QuotaUse     // Reuse's
	periods  []debitPeriod         // Reuse's: what the debits' period pointers point to
	nPeriods int                   // of periods, handed out in this call
	accs     map[accKey]*acc
	dec      events.UsageDecoder // RateMessage's: one partition's events share their texts
	needs    propertyNeeds       // RateMessage's: the data properties rating reads
}

// debitPeriod is where a debit's PeriodStart and PeriodQuantity point (State.period).
type debitPeriod struct {
	start time.Time
	q     events.Decimal
}

// period returns a debit's PeriodStart and PeriodQuantity: new, or with Reuse the state's next
// slots. A slice grown here leaves the pointers already handed out in the old one, unchanged.
func (s *State) period(start time.Time, q events.Decimal) (*time.Time, *events.Decimal) {
	if !s.Reuse {
		ps, pq := new(time.Time), new(events.Decimal) // not &start: that would move every call's to the heap
		*ps, *pq = start, q
		return ps, pq
	}
	if s.nPeriods == len(s.periods) {
		s.periods = make([]debitPeriod, max(4, 2*len(s.periods)))
		s.nPeriods = 0
	}
	p := &s.periods[s.nPeriods]
	s.nPeriods++
	p.start, p.q = start, q
	return &p.start, &p.q
}

// propertyNeeds names the data properties the meters of an event's type read (their value
// property and filters): RateMessage decodes only those (events.PropertyFilter).
type propertyNeeds struct {
	scope events.Scope
	cfg   Config
	buf   [8]string
	// The meters of typ, when Properties looked them up for this message: Rate needs them too.
	typ    string
	meters []events.Meter
	looked bool
}

func (p *propertyNeeds) Properties(eventType string) []string {
	keys := p.buf[:0]
	p.typ, p.meters, p.looked = eventType, p.cfg.MetersFor(p.scope, eventType), true
	for _, m := range p.meters {
		if m.EventType != eventType {
			continue
		}
		if m.NeedsValue() {
			keys = append(keys, m.ValueProperty)
		}
		for k := range m.Filters {
			keys = append(keys, k)
		}
	}
	if len(keys) > len(p.buf) {
		return nil // more than the buffer holds: all of them
	}
	return keys
}

// NewState returns an empty state.
func NewState() *State { return &State{accs: map[accKey]*acc{}} }

// ErrApplied is returned for a sequence at or below the one the state covers.
var ErrApplied = errors.New("usage sequence already applied")

// Rate folds the usage event at stream sequence seq into the state and returns its debits.
// It is deterministic: the same state, event and configuration give the same output.
func (s *State) Rate(seq uint64, scope events.Scope, ev events.Usage, cfg Config) (Output, error) {
	if seq <= s.Seq {
		return Output{}, ErrApplied
	}
	return s.rate(seq, scope, ev, cfg, cfg.MetersFor(scope, ev.Type))
}

// rate is Rate with the meters of the event's scope and type looked up.
func (s *State) rate(seq uint64, scope events.Scope, ev events.Usage, cfg Config, meters []events.Meter) (Output, error) {
	s.Seq = seq
	var out Output
	if s.Reuse {
		out.Debits, out.Quotas, s.nPeriods = s.debits[:0], s.quotas[:0], 0
	}
	if !slices.IsSortedFunc(meters, byMeterKey) { // the catalog's are; anything else is sorted here
		meters = slices.Clone(meters)
		slices.SortFunc(meters, byMeterKey)
	}
	var unrated []string
	for _, m := range meters {
		if !m.Matches(ev.Type, ev.Data) {
			continue
		}
		out.Metered = true
		qty, uniq, ok := eventQuantity(m, ev)
		if !ok {
			unrated = append(unrated, m.Key)
			out.Reasons = append(out.Reasons, ReasonBadValue)
			continue
		}
		// A quota counts what was used: a negative (or zero) quantity of a sum meter counts
		// nothing, as an increment's weight must be above 0 — it would otherwise take a
		// window's use below zero and admit past its limit.
		if (m.Aggregation == events.AggCount || m.Aggregation == events.AggSum) && qty.Sign() > 0 {
			for _, q := range cfg.QuotasForMeter(scope, m.Key) {
				out.Quotas = append(out.Quotas, events.QuotaUse{Quota: q.Key, Amount: qty, Period: q.Period, At: ev.Time, UsageSeq: seq})
			}
		}
		hs := cfg.RulesForMeter(scope, m.Key)
		if !slices.IsSortedFunc(hs, byRuleKey) {
			hs = slices.Clone(hs)
			slices.SortFunc(hs, byRuleKey)
		}
		priced := false
		for _, h := range hs {
			r, ok := h.InForce(ev.Time)
			if !ok {
				continue
			}
			priced = true
			d, reason := s.rateOne(seq, scope, ev, m, r, qty, uniq)
			if reason != "" {
				unrated = append(unrated, m.Key)
				out.Reasons = append(out.Reasons, reason)
				continue
			}
			d.RuleIndex = len(out.Debits)
			out.Debits = append(out.Debits, d)
		}
		if !priced {
			unrated = append(unrated, m.Key)
			out.Reasons = append(out.Reasons, ReasonNoRule)
		}
	}
	if len(unrated) > 0 {
		out.Unrated = &events.UsageUnrated{
			Customer: ev.Customer, EventID: ev.ID,
			EventType: ev.Type, Meters: unrated, Reasons: out.Reasons, UsageSeq: seq, EventTime: ev.Time,
		}
		if !s.NoIDs {
			out.Unrated.ID = "unr_" + shortHash(scope.Product, scope.Env, ev.ID)
		}
	}
	if s.Reuse {
		s.debits, s.quotas = out.Debits[:0], out.Quotas[:0]
		if len(out.Debits) == 0 {
			out.Debits = nil // as without Reuse
		}
		if len(out.Quotas) == 0 {
			out.Quotas = nil
		}
	}
	return out, nil
}

func byMeterKey(a, b events.Meter) int      { return strings.Compare(a.Key, b.Key) }
func byRuleKey(a, b events.RuleHistory) int { return strings.Compare(a.Key, b.Key) }

// eventQuantity is what one event contributes to meter m: its quantity for pricing, and for
// unique_count the value to count once.
func eventQuantity(m events.Meter, ev events.Usage) (q events.Decimal, unique string, ok bool) {
	one := events.DecimalFromInt(1)
	switch m.Aggregation {
	case events.AggCount:
		return one, "", true
	case events.AggUniqueCount:
		v, present := ev.Data[m.ValueProperty]
		if !present || v == nil {
			return q, "", false
		}
		return one, events.PropertyText(v), true
	default:
		d, err := events.DecimalFromJSON(ev.Data[m.ValueProperty])
		if err != nil || !d.SaneQuantity() {
			// More than 40 digits either side of the point is no quantity allot keeps sums
			// of: unrated as a bad value, like text that is no number.
			return q, "", false
		}
		return d, "", true
	}
}

// rateOne prices the event under one rule; a non-empty reason says why it could not be.
func (s *State) rateOne(seq uint64, scope events.Scope, ev events.Usage, m events.Meter, r events.Rule, qty events.Decimal, uniq string) (events.UsageDebited, string) {
	d := events.UsageDebited{
		Customer: ev.Customer, EventID: ev.ID, Rule: r.Key, RuleVersion: r.Version,
		Quantity: qty, EventTime: ev.Time, UsageSeq: seq, Kind: events.KindDebit,
	}
	if !s.NoIDs {
		d.ID = "dbt_" + shortHash(scope.Product, scope.Env, ev.ID, r.Key, strconv.Itoa(r.Version))
	}
	alone := func() (events.UsageDebited, string) {
		c, ok := Round(Cost(r, qty))
		if !ok {
			return d, ReasonOverflow
		}
		d.Amount = c
		return d, ""
	}
	p := rulePeriod(r)
	if r.Model == events.ModelFlat || r.TierScope == events.TierScopeEvent {
		// Priced alone, but still counted in its period's quantity: a later version that
		// prices on the period (tier scope period) must see the whole period's use.
		d, reason := alone()
		if reason == "" {
			if w, _ := s.periodWindow(scope, ev, r, p); w != nil {
				w.Q = aggregate(m.Aggregation, w.Q, qty, uniq, ev.Time, w)
				w.qVersion = 0 // the cached price is of the old quantity
			}
		}
		return d, reason
	}
	w, inRange := s.periodWindow(scope, ev, r, p)
	if !inRange {
		// Its debit's period_start, and the snapshot keeping the window, could not be encoded,
		// and the partition would stop at it for good.
		return d, ReasonOutOfRange
	}
	if w == nil {
		if r.Model == events.ModelPerUnit && (r.PackageSize == nil || r.PackageSize.Sign() <= 0) &&
			(m.Aggregation == events.AggSum || m.Aggregation == events.AggCount) {
			return alone() // linear: the period's other events do not change this one's price
		}
		return d, ReasonTooLate
	}
	before := w.Q
	after := aggregate(m.Aggregation, before, qty, uniq, ev.Time, w)
	cb, ok1 := w.qCost, w.qVersion == r.Version && w.qVersion != 0
	if !ok1 {
		cb, ok1 = Round(Cost(r, before))
	}
	ca, ok2 := Round(Cost(r, after))
	if !ok1 || !ok2 {
		return d, ReasonOverflow
	}
	w.Q, w.qCost, w.qVersion = after, ca, r.Version
	d.Amount = ca - cb
	if d.Amount < 0 {
		d.Kind = events.KindCreditBack
	}
	d.PeriodStart, d.PeriodQuantity = s.period(w.Start, after)
	return d, ""
}

// periodWindow is the window of period p holding the event, for its customer and rule; nil
// when it is older than every window kept, or — inRange false, and nothing kept — when it
// starts or ends outside the years RFC 3339 writes.
func (s *State) periodWindow(scope events.Scope, ev events.Usage, r events.Rule, p events.Period) (w *window, inRange bool) {
	k := accKey{scope.Product, scope.Env, ev.Customer, r.Key}
	a := s.accs[k]
	if a == nil {
		a = &acc{}
		s.accs[k] = a
	}
	if p.Mode == events.ModeFirstUse && a.Anchor.IsZero() {
		a.Anchor = ev.Time
	}
	var start, end time.Time
	if l := &a.last; l.period == p && !l.start.IsZero() && !ev.Time.Before(l.start) && ev.Time.Before(l.end) {
		start, end = l.start, l.end
	} else {
		if p.Mode == events.ModeFirstUse {
			start, end = p.Window(a.Anchor, ev.Time)
		} else {
			start, end = p.WindowAt(ev.Time)
		}
		if !events.TimeInRange(start) || !events.TimeInRange(end) {
			return nil, false // not remembered either: the next event computes and checks again
		}
		a.last.period, a.last.start, a.last.end = p, start, end
	}
	return a.window(start, end), true
}

// aggregate returns the window's quantity after one more event, at event time at.
func aggregate(agg string, before, qty events.Decimal, uniq string, at time.Time, w *window) events.Decimal {
	switch agg {
	case events.AggMax:
		if qty.Cmp(before) > 0 {
			return qty
		}
		return before
	case events.AggLatest:
		if at.Before(w.LatestAt) {
			return before // an older value arriving late: the window's latest stays
		}
		w.LatestAt = at
		return qty
	case events.AggUniqueCount:
		if _, seen := w.Seen[uniq]; seen {
			return before
		}
		if w.Seen == nil {
			w.Seen = map[string]struct{}{}
		}
		// A copy: the value may be the message body's bytes (State.Reuse), which the state
		// must not keep alive, nor see change.
		w.Seen[strings.Clone(uniq)] = struct{}{}
		return before.Add(qty)
	default: // count, sum
		return before.Add(qty)
	}
}

// window finds or creates the window [start, end), keeping the maxWindows that end last; nil
// when it would end before every window kept.
func (a *acc) window(start, end time.Time) *window {
	for i := range a.Windows {
		if w := &a.Windows[i]; w.Start.Equal(start) && w.End.IsZero() {
			w.End = end // restored from a snapshot that did not keep ends: its period's end
		}
	}
	i, found := slices.BinarySearchFunc(a.Windows, window{Start: start, End: end}, func(w, t window) int {
		if c := w.Start.Compare(t.Start); c != 0 {
			return c
		}
		return w.End.Compare(t.End)
	})
	if found {
		return &a.Windows[i]
	}
	a.Windows = slices.Insert(a.Windows, i, window{Start: start, End: end})
	if len(a.Windows) <= maxWindows {
		return &a.Windows[i]
	}
	// Forget the window that ended first (the earliest start among those). A window restored
	// without its end (format 1) counts by its start: taken as ending first, it was dropped
	// before older windows whose ends were known, and a late event found its day empty.
	endOf := func(w *window) time.Time {
		if w.End.IsZero() {
			return w.Start
		}
		return w.End
	}
	drop := 0
	for j := 1; j < len(a.Windows); j++ {
		if c := endOf(&a.Windows[j]).Compare(endOf(&a.Windows[drop])); c < 0 || c == 0 && a.Windows[j].Start.Before(a.Windows[drop].Start) {
			drop = j
		}
	}
	a.Windows = slices.Delete(a.Windows, drop, drop+1)
	switch {
	case drop == i:
		return nil // older than every kept window
	case drop < i:
		i--
	}
	return &a.Windows[i]
}

// rulePeriod is the rule's period, defaulting to a calendar month in UTC.
func rulePeriod(r events.Rule) events.Period {
	p := events.Period{Unit: events.UnitMonth}
	if r.Period != nil {
		p = *r.Period
	}
	n, err := p.NormalizeStored()
	if err != nil {
		return events.Period{Unit: events.UnitMonth, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	}
	return n
}

func shortHash(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}
