-- The outbox relay no longer publishes inside a transaction: a relay leases
-- a batch of unsent rows (lease_until, taken with FOR UPDATE SKIP LOCKED so
-- concurrent relays take different rows), publishes with no transaction and
-- no database connection held, then marks the rows sent. A relay that dies
-- or fails mid-publish leaves its lease to run out, and another relay
-- publishes the rows again: at least once, as before.

-- +goose Up
ALTER TABLE outbox ADD COLUMN lease_until timestamptz;

-- +goose Down
ALTER TABLE outbox DROP COLUMN lease_until;
