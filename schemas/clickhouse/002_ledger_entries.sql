-- Ledger entries, one row per item (a rated batch holds many debits), plus one row of type
-- 'allocation' per block a debit or commit burned (block empty: overage). Credits are whole
-- micro-credits (amount_micro / 1e6 = credits). The sink resumes after max(seq).
CREATE TABLE IF NOT EXISTS ledger_entries (
    seq           UInt64,
    item          UInt32,
    product       String,
    env           String,
    customer      String,
    type          String,
    kind          String,
    entry_time    DateTime,
    recorded_time DateTime,
    amount_micro  Int64,
    rule          String,
    rule_version  UInt32,
    event_id      String,
    quantity      Decimal128(9),
    block         String,
    source        String,
    reservation   String,
    quota         String
) ENGINE = MergeTree()
PARTITION BY toYYYYMM(recorded_time)
ORDER BY (product, env, customer, seq, item);
