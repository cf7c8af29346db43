package analytics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

func dsn(t *testing.T) string {
	t.Helper()
	base := os.Getenv("ALLOT_TEST_CLICKHOUSE")
	if base == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ALLOT_TEST_CLICKHOUSE is not set under CI: run the suite with scripts/test.sh, which starts ClickHouse")
		}
		t.Skip("SKIPPING: no ClickHouse; scripts/test.sh starts one and sets ALLOT_TEST_CLICKHOUSE")
	}
	i := strings.LastIndex(base, "/")
	return fmt.Sprintf("%s/allot_analytics_%d", base[:i], rand.IntN(1_000_000))
}

// migratedDB is a database of the test's own on the suite's ClickHouse, migrated, closed when
// the test ends.
func migratedDB(t *testing.T) driver.Conn {
	t.Helper()
	conn, err := Open(context.Background(), dsn(t))
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	_, err = Migrate(context.Background(), conn, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	return conn
}

func TestMigrationsAreOrderedAndIdempotent(t *testing.T) {
	ms, err := Migrations()
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(ms), 3)
	for i, m := range ms {
		assert.Equal(t, i+1, m.Version, "migrations are numbered 1, 2, 3, …")
		assert.NotEmpty(t, m.Statements)
		for _, st := range m.Statements {
			assert.NotContains(t, st, "DateTime64", "ClickHouse 18.16 has no DateTime64")
		}
	}
	ctx := context.Background()
	conn, err := Open(ctx, dsn(t))
	require.NoError(t, err)
	defer conn.Close()
	log := slog.New(slog.DiscardHandler)
	applied, err := Migrate(ctx, conn, log)
	require.NoError(t, err)
	assert.Len(t, applied, len(ms))
	applied, err = Migrate(ctx, conn, log)
	require.NoError(t, err)
	assert.Empty(t, applied, "a second run applies nothing")
	for _, table := range []string{"usage_events", "ledger_entries", "usage_hourly", "usage_daily"} {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM "+table).Scan(&n), table)
	}
}

func TestUsageQueryValidation(t *testing.T) {
	now := time.Now()
	base := UsageQuery{Scope: events.Scope{Product: "a", Env: "b"}, Meter: "m", From: now.Add(-time.Hour), To: now, Window: "hour"}
	assert.Nil(t, base.Check())
	tests := map[string]func(q *UsageQuery){
		"meter":    func(q *UsageQuery) { q.Meter = "" },
		"from":     func(q *UsageQuery) { q.From = time.Time{} },
		"to":       func(q *UsageQuery) { q.To = q.From.Add(-time.Second) },
		"window":   func(q *UsageQuery) { q.Window = "week" },
		"group_by": func(q *UsageQuery) { q.GroupBy = "bad name!" },
		"limit":    func(q *UsageQuery) { q.Limit = MaxUsageRows + 1 },
	}
	for field, mutate := range tests {
		q := base
		mutate(&q)
		qe := q.Check()
		require.NotNil(t, qe, field)
		assert.Equal(t, field, qe.Field)
	}
	q := base
	q.Window, q.From = "minute", now.Add(-40*24*time.Hour)
	assert.Equal(t, "window", q.Check().Field, "minute windows are bounded")
	assert.Equal(t, time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC), windowEnd(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC), "month"))
}

// A re-rate after a crash writes a batch's quota uses again (in an entry of another id): the
// projection counts each once, and so must the rows for ClickHouse.
func TestQuotaUsedRowsOncePerUse(t *testing.T) {
	l := projector.NewLedger()
	subj := events.LedgerSubject("acme", "live", "c1")
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	use := events.QuotaUse{Quota: "daily", Amount: events.MustDecimal("3"), Period: events.Period{Unit: events.UnitDay}, At: at, UsageSeq: 7}
	quotaRows := 0
	for seq := uint64(1); seq <= 2; seq++ { // the first write, and the re-rate's copy
		data, err := json.Marshal(events.UsageRated{ID: fmt.Sprint("rtd_", seq), Customer: "c1", FirstSeq: 7, LastSeq: 7, Quotas: []events.QuotaUse{use}})
		if err != nil {
			t.Fatal(err)
		}
		applied, err := l.ApplyItems(seq, subj, events.TypeUsageRated, data)
		if err != nil {
			t.Fatal(err)
		}
		for _, row := range ledgerRows(seq, subj, events.TypeUsageRated, data, at, applied, new(atomic.Int64)) {
			if row[5] == "quota.used" {
				quotaRows++
			}
		}
	}
	if quotaRows != 1 {
		t.Fatalf("%d quota.used rows for one use, want 1", quotaRows)
	}
}

// A quota lane's entry holds several customers' increments: each row names its own customer,
// as if each had been written on the customer's subject.
func TestQuotaLaneRowsNameTheirCustomers(t *testing.T) {
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	hour := events.Period{Unit: events.UnitHour}
	e := events.QuotaIncrements{Increments: []events.QuotaIncremented{
		{Customer: "c1", At: at, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal("1"), Period: hour, At: at}, {Quota: "tokens", Amount: events.MustDecimal("30"), Period: hour, At: at}}},
		{Customer: "c2", At: at, Items: []events.QuotaUse{{Quota: "calls", Amount: events.MustDecimal("2"), Period: hour, At: at}}},
	}}
	data, err := e.AppendJSON(nil)
	require.NoError(t, err)
	lane := events.QuotaLaneSubject("acme", "live", 0)
	var got []string
	for _, row := range ledgerRows(9, lane, events.TypeQuotaIncrements, data, at, nil, new(atomic.Int64)) {
		got = append(got, fmt.Sprint(row[4], " ", row[5], " ", row[17], " ", row[13]))
	}
	assert.Equal(t, []string{"c1 quota.incremented.v1 calls 1", "c1 quota.incremented.v1 tokens 30", "c2 quota.incremented.v1 calls 2"}, got)

	reset, err := json.Marshal(events.QuotaReset{Customer: "c3", Quota: "calls", Period: hour, At: at})
	require.NoError(t, err)
	rows := ledgerRows(10, lane, events.TypeQuotaReset, reset, at, nil, new(atomic.Int64))
	require.Len(t, rows, 1)
	assert.Equal(t, "c3", rows[0][4])
}

// During a hand-over a standby may insert part of a run before the old owner inserts the
// whole: only the rows above what ClickHouse holds go in (whole runs were skipped or written
// whole, duplicating the overlap).
func TestInsertLeavesOutRowsAlreadyHeld(t *testing.T) {
	ctx := context.Background()
	conn, err := Open(ctx, dsn(t))
	require.NoError(t, err)
	defer conn.Close()
	require.NoError(t, CheckUTC(ctx, conn))
	require.NoError(t, conn.Exec(ctx, "CREATE TABLE t (seq UInt64, at DateTime, v String) ENGINE = MergeTree() PARTITION BY toYYYYMM(at) ORDER BY seq"))
	s := &Sink{CH: conn}
	nov, oct := time.Date(2026, 11, 30, 23, 59, 59, 0, time.UTC), time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)
	rows := func(from, to uint64, at time.Time) run {
		r := run{first: from, last: to, month: at.Year()*100 + int(at.Month())}
		for q := from; q <= to; q++ {
			r.rows = append(r.rows, []any{q, at, fmt.Sprint("v", q)})
		}
		return r
	}
	var st Stats
	insert := func(runs ...run) {
		require.NoError(t, s.insert(ctx, "t", "seq, at, v", "at", runs, &st, time.Time{}))
	}
	insert(rows(1, 5, nov))                    // the standby
	insert(rows(3, 8, nov))                    // the old owner's overlapping run
	insert(rows(4, 8, nov))                    // a retry of it
	insert(rows(9, 9, oct), rows(10, 12, nov)) // a late event in October, then November again
	insert(rows(9, 9, oct), rows(10, 13, nov)) // the same batch read again, one message longer
	var n, distinct uint64
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(), uniqExact(seq) FROM t").Scan(&n, &distinct))
	assert.Equal(t, uint64(13), n, "every sequence once")
	assert.Equal(t, uint64(13), distinct)
	held, err := s.maxSeqIn(ctx, "t", "at", 202610)
	require.NoError(t, err)
	assert.Equal(t, uint64(9), held, "October's partition holds through 9")
	held, err = s.maxSeqIn(ctx, "t", "at", 202611)
	require.NoError(t, err)
	assert.Equal(t, uint64(13), held, "November's through 13, its last second included")
}

// The lag grows while a batch waits to be inserted (ClickHouse down), instead of staying at
// the last healthy batch's figure.
func TestSinkLagGrowsWhileInsertsWait(t *testing.T) {
	var st Stats
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	st.LagNanos.Store(int64(300 * time.Millisecond))
	if got := st.Lag(now); got != 300*time.Millisecond {
		t.Fatalf("lag %s with nothing waiting, want the last batch's 300ms", got)
	}
	st.PendingSince.Store(now.Add(-90 * time.Second).UnixNano())
	if got := st.Lag(now); got != 90*time.Second {
		t.Fatalf("lag %s with a batch waiting since 90 s, want 90s", got)
	}
}
