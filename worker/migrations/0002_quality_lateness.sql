-- Data quality per minute, and the event-time watermark that decides which late events
-- still count in the per-minute analytics.

-- Per minute of arrival (Kafka record time: a record that fails to parse has no event
-- time). Counts, not rates, so batch deltas add up exactly; `quality_rates` divides.
-- Deltas commit in the batch transaction with the offsets, like analytics_summaries.
CREATE TABLE quality_summaries (
    period_start     timestamptz NOT NULL PRIMARY KEY,
    period_end       timestamptz NOT NULL,
    received_count   bigint      NOT NULL,  -- every record consumed
    accepted_count   bigint      NOT NULL,  -- stored as a new transaction
    null_count       bigint      NOT NULL,  -- a required field missing or null
    invalid_count    bigint      NOT NULL,  -- any other contract violation
    duplicate_count  bigint      NOT NULL,  -- transaction_id already stored
    late_count       bigint      NOT NULL   -- stored, but past the allowed lateness: not in analytics_summaries
);

CREATE VIEW quality_rates AS
SELECT period_start, period_end, received_count,
       null_count::float8      / NULLIF(received_count, 0) AS null_rate,
       invalid_count::float8   / NULLIF(received_count, 0) AS invalid_rate,
       duplicate_count::float8 / NULLIF(received_count, 0) AS duplicate_rate,
       late_count::float8      / NULLIF(received_count, 0) AS late_rate,
       accepted_count::float8  / NULLIF(received_count, 0) AS quality_score
FROM quality_summaries;

-- Highest event time seen per partition (capped at the record's Kafka time, so a clock
-- running ahead cannot make everyone else late). Moved with next_offset in the same
-- compare-and-set, so a replay after a crash classifies every record exactly as before.
ALTER TABLE consumer_offsets ADD COLUMN watermark timestamptz;
