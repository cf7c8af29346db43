package analytics

import (
	"context"
	"log/slog"
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
	conn, err := Open(ctx, dsn(t))
	require.NoError(t, err)
	defer conn.Close()
	_, err = Migrate(ctx, conn, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
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
		rows, err := QueryUsage(ctx, conn, q)
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
