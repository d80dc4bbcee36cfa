-- Retention of the rows that exist only to keep the pipeline safe: the
-- processed_events ledger, settled email claims (notifications) and sent
-- outbox rows (README "Exactly-once effects", "Retention"; store/retention.go).
--
-- Removal is a batched DELETE in the time order of each table, so each
-- table gets an index on the time it is removed by. processed_at and
-- created_at only ever grow: a new entry goes to the right edge of the
-- index (PostgreSQL's fast path for the rightmost leaf), and removal
-- empties the left edge, which vacuum recycles. The indexes are built
-- CONCURRENTLY: on a deployment that already holds a year of rows, a plain
-- CREATE INDEX would block every handler's insert for minutes. That cannot
-- run in a transaction, hence NO TRANSACTION; each statement is safe to run
-- again (a build that failed halfway leaves an invalid index, dropped and
-- built again by the next run).
--
-- Storage parameters, per table:
--   autovacuum_vacuum_scale_factor 0.02: vacuum after 2 % of the rows died,
--     not the default 20 %: a daily removal of one day in twenty is 5 %,
--     and dead rows left for four days would grow the table by a fifth.
--   vacuum_truncate off: vacuum would take an ACCESS EXCLUSIVE lock to cut
--     empty pages off the end of the table (and a standby replays that
--     lock); the pages are reused by the next inserts anyway.
--
-- maintenance holds one row per maintenance task: who holds its lease
-- (one process at a time, through any proxy: a row, not a session lock),
-- when it is due again, and what its last successful run did.

-- +goose NO TRANSACTION
-- +goose Up
DROP INDEX CONCURRENTLY IF EXISTS processed_events_processed_at;
CREATE INDEX CONCURRENTLY processed_events_processed_at ON processed_events (processed_at);
DROP INDEX CONCURRENTLY IF EXISTS notifications_created_at;
CREATE INDEX CONCURRENTLY notifications_created_at ON notifications (created_at);
DROP INDEX CONCURRENTLY IF EXISTS outbox_sent_at;
CREATE INDEX CONCURRENTLY outbox_sent_at ON outbox (sent_at) WHERE sent_at IS NOT NULL;
ALTER TABLE processed_events SET (autovacuum_vacuum_scale_factor = 0.02, vacuum_truncate = false);
ALTER TABLE notifications SET (autovacuum_vacuum_scale_factor = 0.02, vacuum_truncate = false);
ALTER TABLE outbox SET (autovacuum_vacuum_scale_factor = 0.02, vacuum_truncate = false);
CREATE TABLE IF NOT EXISTS maintenance (
    task            text PRIMARY KEY,
    holder          text,
    lease_until     timestamptz,
    due_at          timestamptz NOT NULL DEFAULT now(),
    last_success_at timestamptz,
    last_removed    jsonb
);

-- +goose Down
DROP TABLE IF EXISTS maintenance;
ALTER TABLE outbox RESET (autovacuum_vacuum_scale_factor, vacuum_truncate);
ALTER TABLE notifications RESET (autovacuum_vacuum_scale_factor, vacuum_truncate);
ALTER TABLE processed_events RESET (autovacuum_vacuum_scale_factor, vacuum_truncate);
DROP INDEX CONCURRENTLY IF EXISTS outbox_sent_at;
DROP INDEX CONCURRENTLY IF EXISTS notifications_created_at;
DROP INDEX CONCURRENTLY IF EXISTS processed_events_processed_at;
