-- sluice schema. Tables live in the pipeline's schema (search_path is set per connection).
-- Index choices weigh read paths against COPY cost: see README "Schema and indexes".

-- Landed transactions, one row per valid transaction_id, partitioned by day of event time
-- so retention is a cheap DROP of whole partitions.
CREATE TABLE transactions (
    transaction_id    text             NOT NULL,
    customer_id       text             NOT NULL,
    merchant_id       text             NOT NULL,
    merchant_category text,
    amount            numeric(12,2)    NOT NULL,
    currency          text             NOT NULL,
    event_time        timestamptz      NOT NULL,
    payment_method    text             NOT NULL,
    channel           text,
    country           text             NOT NULL,
    shipping_country  text,
    card_last4        text,
    card_fingerprint  text,
    device_id         text,
    ip_address        text,
    latitude          double precision,
    longitude         double precision,
    account_age_days  integer,
    items             integer,
    kafka_partition   integer          NOT NULL,
    kafka_offset      bigint           NOT NULL,
    kafka_timestamp   timestamptz      NOT NULL,
    ingested_at       timestamptz      NOT NULL DEFAULT statement_timestamp(),
    fraud_score       double precision,
    is_fraud          boolean          NOT NULL DEFAULT false
) PARTITION BY RANGE (event_time);

-- Event-time ranges: rows arrive nearly in event-time order, so BRIN is tiny and cheap to
-- maintain where a btree would cost a random insert per row.
CREATE INDEX transactions_event_time_brin ON transactions USING brin (event_time);
-- A customer's recent transactions.
CREATE INDEX transactions_customer_recent ON transactions (customer_id, event_time DESC);
-- Fraud only: a partial index holds just the flagged rows.
CREATE INDEX transactions_fraud ON transactions (event_time) WHERE is_fraud;

-- The idempotency key. `transactions` is partitioned by event time, where a unique index
-- cannot cover transaction_id alone; this table is that global unique index, and the
-- lookup path from an id to its event time (and so its partition).
CREATE TABLE transaction_ids (
    transaction_id text        PRIMARY KEY,
    event_time     timestamptz NOT NULL
);
CREATE INDEX transaction_ids_event_time_brin ON transaction_ids USING brin (event_time);

-- Consumed offsets per partition, written in the same transaction as the rows: the
-- checkpoint. next_offset = -1 means "nothing stored yet".
CREATE TABLE consumer_offsets (
    group_id    text    NOT NULL,
    topic       text    NOT NULL,
    partition   integer NOT NULL,
    next_offset bigint  NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (group_id, topic, partition)
);

CREATE TABLE rejected_transactions (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at      timestamptz NOT NULL DEFAULT statement_timestamp(),
    source_topic     text        NOT NULL,
    source_partition integer     NOT NULL,
    source_offset    bigint      NOT NULL,
    reason           text        NOT NULL,
    detail           text,
    transaction_id   text,
    -- Original bytes with card numbers masked; bytea because they may not be UTF-8.
    raw_payload      bytea       NOT NULL
);
CREATE INDEX rejected_transactions_received_at ON rejected_transactions USING brin (received_at);

CREATE TABLE fraud_alerts (
    transaction_id  text             PRIMARY KEY,
    customer_id     text             NOT NULL,
    alert_timestamp timestamptz      NOT NULL DEFAULT statement_timestamp(),
    event_time      timestamptz      NOT NULL,
    score           double precision NOT NULL,
    reasons         text[]           NOT NULL,
    investigated    boolean          NOT NULL DEFAULT false
);
-- The analysts' queue: uninvestigated alerts, newest first.
CREATE INDEX fraud_alerts_open ON fraud_alerts (alert_timestamp DESC) WHERE NOT investigated;

-- Per-minute event-time windows, overall ('all', '') and by dimension. Deltas are added in
-- the batch transaction that also moves the offsets, so a replay never counts twice.
CREATE TABLE analytics_summaries (
    period_start      timestamptz   NOT NULL,
    period_end        timestamptz   NOT NULL,
    dimension         text          NOT NULL,
    dimension_value   text          NOT NULL,
    transaction_count bigint        NOT NULL,
    total_amount      numeric(18,2) NOT NULL,
    fraud_count       bigint        NOT NULL,
    PRIMARY KEY (period_start, dimension, dimension_value)
);

-- Per-customer fraud state, persisted with the batch so a worker that gains a partition
-- can warm it.
CREATE TABLE customer_profiles (
    customer_id text        PRIMARY KEY,
    partition   integer     NOT NULL,
    profile     bytea       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_profiles_partition ON customer_profiles (partition);
