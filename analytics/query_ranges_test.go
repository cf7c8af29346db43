package analytics

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A query's windows hold the same usage whichever table answers it — the hourly rollup (a sum
// meter, no grouping), the raw events (grouped by an event property) — and hold it whole: the
// windows that overlap [from, to), as the rollups keep them. The raw events were cut at to, so
// one window_end had two totals.
func TestUsageWindowsAgreeAcrossPaths(t *testing.T) {
	ctx := context.Background()
	conn := migratedDB(t)
	s := &Sink{CH: conn}
	at := func(h, m int) time.Time { return time.Date(2026, 5, 1, h, m, 0, 0, time.UTC) }
	row := func(seq uint64, t time.Time) []any {
		return []any{seq, uint16(0), "acme", "test", "c1", "e" + string(rune('a'+seq)), "llm", "", t, uint32(0), t,
			[]string{"tokens"}, []decimal.Decimal{decimal.NewFromInt(int64(seq))}, `{"model":"m1"}`}
	}
	runs := []run{{first: 1, last: 2, month: 202605, rows: [][]any{row(1, at(10, 10)), row(2, at(10, 45))}}}
	var st Stats
	require.NoError(t, s.insert(ctx, "usage_events", usageColumns, "event_time", runs, &st, time.Time{}))

	q := UsageQuery{Scope: events.Scope{Product: "acme", Env: "test"}, Meter: "tokens", From: at(10, 0), To: at(10, 30), Window: "hour", Aggregation: events.AggSum}
	total := func(q UsageQuery) string {
		rows, _, err := QueryUsage(ctx, conn, q)
		require.NoError(t, err)
		sum := events.DecimalFromInt(0)
		for _, r := range rows {
			sum = sum.Add(r.Value)
		}
		return sum.String()
	}
	plain := total(q)
	q.GroupBy = "model"
	byModel := total(q)
	q.GroupBy, q.Aggregation = "", events.AggMax
	maxed := total(q)
	assert.Equal(t, plain, byModel, "grouping by a property must not change the window's total")
	assert.Equal(t, "3", plain, "the 10:00 hour whole: its events at 10:10 and 10:45")
	assert.Equal(t, "2", maxed, "the largest of the hour's quantities")
	// Day and month windows likewise, through the daily rollup and the raw events.
	for _, w := range []string{"day", "month"} {
		q := UsageQuery{Scope: events.Scope{Product: "acme", Env: "test"}, Meter: "tokens", From: at(10, 0), To: at(10, 30), Window: w, Aggregation: events.AggSum}
		plain := total(q)
		q.GroupBy = "model"
		assert.Equal(t, plain, total(q), w)
		assert.Equal(t, "3", plain, w)
	}
}

// A usage answer pages in its own order: limit rows at a time, each page starting after the
// last row of the one before, until none is left; the pages together are the whole answer,
// with no row twice and none missing, through the rollups and the raw events alike.
func TestUsagePages(t *testing.T) {
	ctx := context.Background()
	conn := migratedDB(t)
	s := &Sink{CH: conn}
	at := func(h, m int) time.Time { return time.Date(2026, 6, 1, h, m, 0, 0, time.UTC) }
	var rows [][]any
	seq := uint64(0)
	for h := 10; h < 13; h++ {
		for _, c := range []string{"c1", "c2", "c3"} {
			seq++
			rows = append(rows, []any{seq, uint16(0), "pages", "test", c, "e" + strconv.FormatUint(seq, 10), "llm", "", at(h, 5), uint32(0), at(h, 5),
				[]string{"tokens"}, []decimal.Decimal{decimal.NewFromInt(int64(seq))}, `{"model":"m` + strconv.Itoa(h%2) + `"}`})
		}
	}
	var st Stats
	require.NoError(t, s.insert(ctx, "usage_events", usageColumns, "event_time", []run{{first: 1, last: seq, month: 202606, rows: rows}}, &st, time.Time{}))

	for _, q := range []UsageQuery{
		{Window: "hour", GroupBy: "customer"}, // the hourly rollup
		{Window: "day", GroupBy: "customer"},  // the daily rollup
		{Window: "minute", GroupBy: "model"},  // the raw events
		{Window: "hour"},                      // not grouped
	} {
		q.Scope, q.Meter, q.Aggregation = events.Scope{Product: "pages", Env: "test"}, "tokens", events.AggSum
		q.From, q.To = at(0, 0), at(23, 0)
		name := q.Window + "/" + q.GroupBy
		whole, more, err := QueryUsage(ctx, conn, q)
		require.NoError(t, err, name)
		require.False(t, more, name)
		require.NotEmpty(t, whole, name)
		// A range past what DateTime holds (1970-2105) answers as one within it: bound past
		// it, ClickHouse read 0000-00-00 and answered nothing.
		wide := q
		wide.From, wide.To = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
		if q.Window != "minute" {
			all, _, err := QueryUsage(ctx, conn, wide)
			require.NoError(t, err, name)
			assert.Equal(t, whole, all, "%s from 1900 to 2200", name)
		}
		for _, limit := range []int{1, 2, len(whole)} {
			var paged []UsageRow
			q := q
			q.Limit, q.After = limit, nil
			for pages := 0; ; pages++ {
				require.Less(t, pages, len(whole)+1, "%s limit %d: paging does not end", name, limit)
				page, more, err := QueryUsage(ctx, conn, q)
				require.NoError(t, err, name)
				require.LessOrEqual(t, len(page), limit, name)
				paged = append(paged, page...)
				if !more {
					break
				}
				require.Len(t, page, limit, "%s: a page before the last is full", name)
				last := page[len(page)-1]
				q.After = &UsagePosition{WindowStart: last.WindowStart, Group: last.Customer + last.Group}
			}
			assert.Equal(t, whole, paged, "%s limit %d", name, limit)
		}
	}
}
