package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"os"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/shopspring/decimal"

	"github.com/allot-dev/allot/analytics"
)

// benchSink measures the ClickHouse sink while the pipeline ingests at full rate — rows/s from
// the first event posted until ClickHouse holds them all, and the lag behind the stream — next
// to a raw batch insert of the same rows into the same table, in the same run.
func benchSink(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	dsn, conn, drop, err := benchClickHouse(ctx)
	if err != nil {
		return nil, err
	}
	defer drop()

	// Raw: the same number of rows of the same shape, straight into a scratch copy of the table.
	if err := conn.Exec(ctx, "CREATE TABLE raw_usage AS usage_events"); err != nil {
		return nil, err
	}
	evs := benchEvents("sink", o.events)
	start := time.Now()
	for i := 0; i < len(evs); i += 10000 {
		b, err := conn.PrepareBatch(ctx, "INSERT INTO raw_usage (seq, partition, product, env, customer, event_id, type, source, event_time, event_time_ns, ingest_time, meters, quantities, properties)")
		if err != nil {
			return nil, err
		}
		for j := i; j < min(i+10000, len(evs)); j++ {
			e := evs[j]
			if err := b.Append(uint64(j+1), uint16(j%8), "bench", "bench", e.Customer, e.ID, e.Type, e.Source, e.Time.Truncate(time.Second), uint32(0), time.Now().UTC().Truncate(time.Second),
				[]string{"tokens"}, []decimal.Decimal{decimal.NewFromInt(int64(100 + j%900))}, `{"model":"small","region":"eu-west-1","tokens":100}`); err != nil {
				return nil, err
			}
		}
		if err := b.Send(); err != nil {
			return nil, err
		}
	}
	raw := float64(len(evs)) / time.Since(start).Seconds()

	n, done, err := benchNodeCH(ctx, false, dsn)
	if err != nil {
		return nil, err
	}
	defer done()
	client := benchClient(o)
	bodies := benchBodies(benchEvents("sunk", o.events), o)
	start = time.Now()
	var maxLag time.Duration
	ingested := make(chan error, 1)
	go func() {
		_, err := client.send(ctx, n.httpURL(), bodies, o.events, o)
		ingested <- err
	}()
	deadline := time.Now().Add(5 * time.Minute)
	for n.sink.Usage.Rows.Load() < int64(o.events) {
		if l := time.Duration(n.sink.Usage.LagNanos.Load()); l > maxLag {
			maxLag = l
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sink stalled at %d of %d rows", n.sink.Usage.Rows.Load(), o.events)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if l := time.Duration(n.sink.Usage.LagNanos.Load()); l > maxLag {
		maxLag = l
	}
	sinkRate := float64(o.events) / time.Since(start).Seconds()
	if err := <-ingested; err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench sink: %d events through the whole pipeline: %.0f rows/s into ClickHouse (raw batch insert %.0f rows/s); worst batch lag %.3f s\n",
		o.events, sinkRate, raw, maxLag.Seconds())
	return []benchResult{
		{Name: "sink_rows", Value: sinkRate, Unit: "rows/s", BaselineName: "clickhouse_batch_insert", BaselineValue: raw, Ratio: sinkRate / raw},
		{Name: "sink_lag", Value: maxLag.Seconds(), Unit: "s", BaselineName: "lag_budget", BaselineValue: 2, Ratio: maxLag.Seconds() / 2},
	}, nil
}

// benchClickHouseDSN is ALLOT_CLICKHOUSE, else ALLOT_TEST_CLICKHOUSE (the test command's
// server), else "".
func benchClickHouseDSN() string {
	if v := os.Getenv("ALLOT_CLICKHOUSE"); v != "" {
		return v
	}
	return os.Getenv("ALLOT_TEST_CLICKHOUSE")
}

// benchClickHouse makes a scratch database with allot's tables on the configured server and
// returns its DSN, a connection to it, and a func that drops it.
func benchClickHouse(ctx context.Context) (string, driver.Conn, func(), error) {
	base := benchClickHouseDSN()
	if base == "" {
		return "", nil, nil, exitWith(2, fmt.Errorf("this figure needs ClickHouse: set ALLOT_CLICKHOUSE=clickhouse://127.0.0.1:9000/default"))
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", nil, nil, exitWith(2, err)
	}
	u.Path = fmt.Sprintf("/allot_bench_%d", rand.IntN(1_000_000))
	conn, err := analytics.Open(ctx, u.String())
	if err != nil {
		return "", nil, nil, err
	}
	drop := func() {
		conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+u.Path[1:])
		conn.Close()
	}
	if _, err := analytics.Migrate(ctx, conn, nil2Logger()); err != nil {
		drop()
		return "", nil, nil, err
	}
	return u.String(), conn, drop, nil
}

func nil2Logger() *slog.Logger { return slog.New(slog.DiscardHandler) }
