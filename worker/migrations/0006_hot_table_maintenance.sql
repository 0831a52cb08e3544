-- Maintenance of the hot tables in small, frequent steps instead of rare large ones. By
-- default autovacuum waits for dead (or inserted) rows worth 20% of a table: on a growing
-- table each run gets bigger and lands as one burst of reads, hint-bit writes and WAL, in the
-- middle of whatever the sink is doing. Fixed thresholds (scale factor 0) keep every run
-- about the same small size however large the table has grown. How often autovacuum looks
-- at all is the server's autovacuum_naptime (README "Tuning Postgres").

-- Upserted for the customers of every batch (fillfactor 50 from 0003 keeps the updates HOT).
-- HOT pruning frees space on the page, but the visibility map and the dead line pointers
-- wait for vacuum; 1% of a profile table is enough to start one.
ALTER TABLE customer_profiles SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.05
);

-- Every batch adds its deltas in place to the rows of the current minute: a few rows
-- rewritten over and over, each rewrite one dead row. Rows are inserted a minute at a time
-- and fill their pages; room left on the page lets the next update of the same row stay
-- HOT. Older minutes are never touched again, so once vacuumed their pages are all-visible
-- and skipped: a run costs about the recent minutes only, whatever the table's size.
ALTER TABLE analytics_summaries SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 2000,
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 10000
);

-- The same pattern with one row per minute of arrival: every batch rewrites that row.
ALTER TABLE quality_summaries SET (
    fillfactor = 70,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 500
);

-- A row per partition and group, rewritten by every batch of that partition: a few rows
-- that pile up dead versions fastest of all. The table is a page or two, so a vacuum is
-- near free; run one every few hundred batches so each lookup stays a single-page read.
ALTER TABLE consumer_offsets SET (
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 200,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 200
);

-- Insert-only (rows leave by partition drop and the daily retention DELETE). No dead rows
-- to clean, but vacuum still has to set the visibility map and hint bits and freeze, once
-- per page. After every 100k new rows rather than after 20% growth: each run covers only
-- the newest pages (the all-visible ones are skipped), so the work comes in small slices
-- instead of a pass over a fifth of the table.
ALTER TABLE transaction_ids SET (
    autovacuum_vacuum_insert_scale_factor = 0,
    autovacuum_vacuum_insert_threshold = 100000
);

-- transactions is partitioned: Postgres takes storage parameters only on the partitions,
-- and a new partition does not inherit them. The worker creates the daily partitions
-- (db::maintain_partitions) with the same parameters; this covers the existing ones.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN
        SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'transactions'::regclass
    LOOP
        EXECUTE format(
            'ALTER TABLE %s SET (autovacuum_vacuum_insert_scale_factor = 0, '
            'autovacuum_vacuum_insert_threshold = 100000)', part);
    END LOOP;
END
$$;
