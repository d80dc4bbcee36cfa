-- An email whose SMTP conversation broke after the whole message was sent
-- and before the server's verdict may be out. Its claim moves to 'unknown':
-- it keeps its lease, so no copy sends before the lease runs out, and the
-- delivery that made it can no longer claim it again as its own (only a
-- 'sending' claim is recognised by its token). claimed_from keeps the state
-- the last claim replaced (NULL for a new claim, 'failed' for a retry of a
-- refused send, 'sending' or 'unknown' for a takeover), so the claim's
-- outcome is told in the one statement that makes it.

-- +goose Up
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('sending', 'unknown', 'failed', 'sent'));
ALTER TABLE notifications ADD COLUMN claimed_from text;

-- +goose Down
ALTER TABLE notifications DROP COLUMN claimed_from;
UPDATE notifications SET status = 'sending' WHERE status = 'unknown';
ALTER TABLE notifications DROP CONSTRAINT notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('sending', 'failed', 'sent'));
