-- The delivery that holds a notification claim. A claim committed while its
-- acknowledgement was lost (a failover mid-commit) is recognised by the
-- same delivery as its own instead of blocking it until the lease runs out.

-- +goose Up
ALTER TABLE notifications ADD COLUMN claim_token text;

-- +goose Down
ALTER TABLE notifications DROP COLUMN claim_token;
