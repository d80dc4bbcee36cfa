-- Several pipelines may share one database (a staging stack beside another,
-- parallel test runs): each outbox row names the topic it is for, and a
-- relay publishes only the rows of its own topic. Without this, one
-- pipeline's relay published another's cancellations to the wrong topic,
-- where they were never seen by the right consumers.
-- order_id lets the report count the pending rows of some orders.
--
-- Rows left unsent from before this migration have no topic and no relay
-- publishes them; hand them over with
--   UPDATE outbox SET topic = '<topic name>' WHERE topic = '' AND sent_at IS NULL;

-- +goose Up
ALTER TABLE outbox ADD COLUMN topic text NOT NULL DEFAULT '', ADD COLUMN order_id text NOT NULL DEFAULT '';
ALTER TABLE outbox ALTER COLUMN topic DROP DEFAULT, ALTER COLUMN order_id DROP DEFAULT;
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (topic, id) WHERE sent_at IS NULL;

-- +goose Down
DROP INDEX outbox_unsent;
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
ALTER TABLE outbox DROP COLUMN order_id, DROP COLUMN topic;
