package analytics

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/allot-dev/allot/events"
)

// UsageQuery is GET /v1/usage.
type UsageQuery struct {
	Scope    events.Scope
	Meter    string
	Customer string // empty: every customer
	From, To time.Time
	Window   string // minute, hour, day or month
	GroupBy  string // empty, "customer", or an event property
	// Aggregation and ValueProperty are the meter's (events.Meter): count and sum meters add
	// up (from the rollups where the window allows); max takes the largest value, latest the
	// last by event time, and unique_count counts distinct values of ValueProperty — those read
	// the raw events. Empty is sum.
	Aggregation, ValueProperty string
	// Limit is the most rows one answer holds: 0 is DefaultUsageRows. After, when set, is the
	// last row of the page before: rows come in (window_start, customer or group) order and
	// this page starts after it, so paging neither repeats nor skips a row.
	Limit int
	After *UsagePosition
}

// UsagePosition is a row's place in a usage answer's order.
type UsagePosition struct {
	WindowStart time.Time
	Group       string // the row's customer or group; empty when not grouped
}

// DefaultUsageRows and MaxUsageRows bound one answer: a month of minute windows grouped by
// customer can be millions of rows, more than anyone should build in memory and send at once.
const (
	DefaultUsageRows = 10_000
	MaxUsageRows     = 100_000
)

// UsageRow is one window's value (for one customer or group when grouped).
type UsageRow struct {
	WindowStart time.Time      `json:"window_start"`
	WindowEnd   time.Time      `json:"window_end"`
	Customer    string         `json:"customer,omitempty"`
	Group       string         `json:"group,omitempty"`
	Value       events.Decimal `json:"value"`
}

// QueryError names the offending parameter.
type QueryError struct{ Field, Msg string }

func (e *QueryError) Error() string { return e.Field + ": " + e.Msg }

var propertyName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]{0,127}$`)

// Check validates the query.
func (q UsageQuery) Check() *QueryError {
	switch {
	case q.Meter == "":
		return &QueryError{"meter", "meter is required"}
	case q.From.IsZero() || q.To.IsZero():
		return &QueryError{"from", "from and to are required (RFC 3339)"}
	case !q.From.Before(q.To):
		return &QueryError{"to", "to must be after from"}
	}
	switch q.Window {
	case "minute", "hour", "day", "month":
	default:
		return &QueryError{"window", "window must be minute, hour, day or month"}
	}
	if q.Window == "minute" && q.To.Sub(q.From) > 31*24*time.Hour {
		return &QueryError{"window", "minute windows cover at most 31 days per query"}
	}
	if q.GroupBy != "" && q.GroupBy != "customer" && !propertyName.MatchString(q.GroupBy) {
		return &QueryError{"group_by", "group_by is customer or an event property name"}
	}
	if q.Limit < 0 || q.Limit > MaxUsageRows {
		return &QueryError{"limit", fmt.Sprintf("limit must be a whole number from 1 to %d", MaxUsageRows)}
	}
	return nil
}

// QueryUsage answers a usage query from the rollups (hour, day, month) or the raw events
// (minute windows, or grouping by an event property): at most q.Limit rows, and whether more
// follow them.
func QueryUsage(ctx context.Context, conn driver.Conn, q UsageQuery) (rows []UsageRow, more bool, err error) {
	if qe := q.Check(); qe != nil {
		return nil, false, qe
	}
	limit := q.Limit
	if limit == 0 {
		limit = DefaultUsageRows
	}
	// Within what DateTime holds (1970 through 2105): bound past it, ClickHouse 18.16 read the time
	// as 0000-00-00, and a query to 2200 answered nothing.
	from, to := maxTime(q.From.UTC(), time.Unix(0, 0).UTC()), minTime(q.To.UTC(), maxDateTime.Add(-time.Second))
	if !from.Before(to) {
		return nil, false, nil
	}
	args := []any{q.Scope.Product, q.Scope.Env, q.Meter}
	var sql string
	byProperty := q.GroupBy != "" && q.GroupBy != "customer"
	groupCol := "''"
	if q.GroupBy == "customer" {
		groupCol = "customer"
	}
	customerFilter := ""
	if q.Customer != "" {
		customerFilter = " AND customer = ?"
	}
	// A property's value as text: strings without their quotes, so "7" and 7 are one value (as
	// rating's unique_count has it).
	const propertyText = "replaceRegexpAll(visitParamExtractRaw(properties, ?), '^\"|\"$', '')"
	value := "sum(qty)"
	var valueArgs []any
	switch q.Aggregation {
	case events.AggMax:
		value = "max(qty)"
	case events.AggLatest:
		value = "argMax(qty, (event_time, event_time_ns, seq))"
	case events.AggUniqueCount:
		value, valueArgs = "toDecimal128(uniqExact("+propertyText+"), 9)", []any{q.ValueProperty}
	}
	rawEvents := q.Window == "minute" || byProperty || len(valueArgs) > 0 || value != "sum(qty)"
	switch {
	case rawEvents:
		win := map[string]string{"minute": "toStartOfMinute(event_time)", "hour": "toStartOfHour(event_time)", "day": "toDateTime(toDate(event_time))", "month": "toDateTime(toStartOfMonth(event_time))"}[q.Window]
		var groupArgs []any
		if byProperty {
			groupCol, groupArgs = propertyText, []any{q.GroupBy}
		}
		// Placeholders in the order the SELECT names them: the group, the value, then WHERE.
		args = append(append(groupArgs, valueArgs...), args...)
		sql = "SELECT " + win + " AS w, " + groupCol + " AS g, " + value + " AS v FROM usage_events ARRAY JOIN meters AS m, quantities AS qty " +
			"WHERE product = ? AND env = ? AND m = ? AND event_time >= ? AND event_time < ?" + customerFilter + " GROUP BY w, g"
	case q.Window == "hour":
		sql = "SELECT hour AS w, " + groupCol + " AS g, sum(quantity) AS v FROM usage_hourly WHERE product = ? AND env = ? AND meter = ? AND hour >= ? AND hour < ?" +
			customerFilter + " GROUP BY w, g"
	default:
		win := "toDateTime(day)"
		if q.Window == "month" {
			win = "toDateTime(toStartOfMonth(day))"
		}
		sql = "SELECT " + win + " AS w, " + groupCol + " AS g, sum(quantity) AS v FROM usage_daily WHERE product = ? AND env = ? AND meter = ? AND day >= toDate(?) AND day <= toDate(?)" +
			customerFilter + " GROUP BY w, g"
	}
	// Windows that overlap [from, to), whole, whichever table answers: from goes back to its
	// window's start (rollup rows are keyed by it) and to forward to the end of the window it
	// ends in (the raw events were cut at to, the rollups took the whole hour or day: one query
	// gave two totals for one window_end depending on its grouping or aggregation).
	from = windowStart(from, q.Window)
	if to.After(from) {
		to = windowEnd(windowStart(to.Add(-time.Nanosecond), q.Window), q.Window)
	}
	if rawEvents || q.Window == "hour" {
		// DateTime has whole seconds: widen [from, to) to the seconds that overlap it, or an
		// event in to's own second would be cut off.
		if t := to.Truncate(time.Second); !t.Equal(to) {
			to = t.Add(time.Second)
		}
		// The last window may end past DateTime's last second; nothing is stored there.
		args = append(args, from, minTime(to, maxDateTime.Add(-time.Second)))
	} else {
		args = append(args, from.Format("2006-01-02"), to.Add(-time.Nanosecond).Format("2006-01-02"))
	}
	if q.Customer != "" {
		args = append(args, q.Customer)
	}
	if q.After != nil {
		// Keyset paging on the answer's own order: a page costs the same wherever it starts.
		after := q.After.WindowStart.UTC().Truncate(time.Second)
		sql += " HAVING w > ? OR (w = ? AND g > ?)"
		args = append(args, after, after, q.After.Group)
	}
	// One row past the page says whether another page follows.
	sql += fmt.Sprintf(" ORDER BY w, g LIMIT %d", limit+1)
	res, err := conn.Query(ctx, sql, args...)
	if err != nil {
		return nil, false, fmt.Errorf("querying usage: %w", err)
	}
	defer res.Close()
	var out []UsageRow
	for res.Next() {
		if len(out) == limit {
			return out, true, nil
		}
		var w time.Time
		var g string
		var v decimal.Decimal
		if err := res.Scan(&w, &g, &v); err != nil {
			return nil, false, err
		}
		r := UsageRow{WindowStart: w.UTC(), WindowEnd: windowEnd(w.UTC(), q.Window)}
		val, _ := events.ParseDecimal(v.String())
		r.Value = val
		if q.GroupBy == "customer" {
			r.Customer = g
		} else if byProperty {
			r.Group = g
		}
		out = append(out, r)
	}
	return out, false, res.Err()
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// windowStart is the start of the window (UTC) holding t.
func windowStart(t time.Time, window string) time.Time {
	switch window {
	case "minute":
		return t.Truncate(time.Minute)
	case "hour":
		return t.Truncate(time.Hour)
	case "day":
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	case "month":
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return t
}

func windowEnd(start time.Time, window string) time.Time {
	switch window {
	case "minute":
		return start.Add(time.Minute)
	case "hour":
		return start.Add(time.Hour)
	case "day":
		return start.AddDate(0, 0, 1)
	default:
		return start.AddDate(0, 1, 0) // start is the first of a month: AddDate is exact here
	}
}
