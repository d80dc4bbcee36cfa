-- Payload fingerprints next to the ledger markers: a second event with a
-- known event_id and a different payload is a conflict, caught by the
-- database even when Redis has forgotten the key. Notifications get a
-- 'failed' state (the send was refused, nothing went out) distinct from an
-- expired 'sending' claim (a worker died mid-send: the email may be out).
-- Products get a version, so a stale cache fill cannot overwrite a newer entry.

-- +goose Up
ALTER TABLE processed_events ADD COLUMN fingerprint bytea;
ALTER TABLE notifications ADD COLUMN fingerprint bytea;
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('sending', 'failed', 'sent'));
ALTER TABLE products ADD COLUMN version bigint NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE products DROP COLUMN version;
UPDATE notifications SET status = 'sending' WHERE status = 'failed';
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('sending', 'sent'));
ALTER TABLE notifications DROP COLUMN fingerprint;
ALTER TABLE processed_events DROP COLUMN fingerprint;
