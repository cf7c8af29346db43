// Package analytics is allot's ClickHouse side: versioned migrations, the sink that copies the
// usage and ledger streams into tables, and the usage queries behind GET /v1/usage.
//
// Invariants:
//   - Every row carries the stream sequence it came from, and the sink resumes after the
//     largest sequence ClickHouse already holds: a crash between an insert and anything else
//     never inserts a row twice, and nothing acknowledged is skipped.
//   - Each INSERT covers a contiguous run of sequences that falls in one table partition, so
//     it lands whole or not at all and max(seq) is always a safe resume point.
//   - While ClickHouse is down the sink retries with backoff and loses nothing: the streams
//     keep the events until it catches up.
//   - Rows at or below what the run's month partition holds are left out of every insert, row
//     by row, so a retry or an overlapping hand-over never duplicates. Per partition is enough:
//     every copy of a row falls in one partition, and every sink inserts in stream order.
//   - Under a lease, the sink confirms the lease right before each insert (RunConfirmed), so a
//     sink paused past the lease's time to live stops instead of racing its successor.
//   - What a column cannot hold (a time outside 1970-2105, a quantity of 10^29 or more) is left
//     out and counted (Stats.Unstorable), never sent: the driver would refuse the whole batch
//     for ever.
//   - The schema runs on Debian's ClickHouse 18.16 and on current releases: no DateTime64,
//     INSERTs list their columns. The server must be in UTC (CheckUTC, before migrating).
//
// It is a top-level package because it spans the pipeline's outputs (usage and ledger) and
// serves the API; it reads the streams like any other stage (docs/ARCHITECTURE.md).
package analytics
