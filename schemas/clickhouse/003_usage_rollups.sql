-- Hourly and daily usage per (product, env, customer, meter), kept current by materialized
-- views on usage_events. SummingMergeTree adds rows up as parts merge: always query them with
-- sum() and GROUP BY.
CREATE TABLE IF NOT EXISTS usage_hourly (
    product  String,
    env      String,
    customer String,
    meter    String,
    hour     DateTime,
    quantity Decimal128(9),
    events   UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (product, env, meter, customer, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_hourly_mv TO usage_hourly AS
SELECT product, env, customer, m AS meter, toStartOfHour(event_time) AS hour, sum(q) AS quantity, count() AS events
FROM usage_events ARRAY JOIN meters AS m, quantities AS q
GROUP BY product, env, customer, meter, hour;

CREATE TABLE IF NOT EXISTS usage_daily (
    product  String,
    env      String,
    customer String,
    meter    String,
    day      Date,
    quantity Decimal128(9),
    events   UInt64
) ENGINE = SummingMergeTree()
PARTITION BY toYYYYMM(day)
ORDER BY (product, env, meter, customer, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_daily_mv TO usage_daily AS
SELECT product, env, customer, m AS meter, toDate(event_time) AS day, sum(q) AS quantity, count() AS events
FROM usage_events ARRAY JOIN meters AS m, quantities AS q
GROUP BY product, env, customer, meter, day;
