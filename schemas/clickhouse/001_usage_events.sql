-- Raw usage events, one row per event, written by the sink in usage stream order.
-- seq is the usage stream sequence: the sink resumes after max(seq), so a crash between an
-- insert and the stream ack never inserts a row twice.
-- meters/quantities: the meters that counted the event when it was sunk, and the quantity each
-- took from it (count meters: 1), exact to 9 decimals.
CREATE TABLE IF NOT EXISTS usage_events (
    seq           UInt64,
    partition     UInt16,
    product       String,
    env           String,
    customer      String,
    event_id      String,
    type          String,
    source        String,
    event_time    DateTime,
    event_time_ns UInt32,
    ingest_time   DateTime,
    meters        Array(String),
    quantities    Array(Decimal128(9)),
    properties    String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(event_time)
ORDER BY (product, env, customer, event_time, event_id);
