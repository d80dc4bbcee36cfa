-- The transactional outbox: events a handler decides to publish (inventory's
-- order.cancelled when stock runs out) are written in the transaction of the
-- decision, and the relay publishes them to SNS, at least once, in order.
-- One cancellation email per order: a second cancellation of the same order
-- (out of stock, and by the customer) is recorded without a second email.

-- +goose Up
CREATE TABLE outbox (
    id         bigserial PRIMARY KEY,
    event_id   uuid NOT NULL UNIQUE,
    event_type text NOT NULL,
    body       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;
CREATE UNIQUE INDEX notifications_one_cancellation ON notifications (order_id) WHERE kind = 'order.cancelled';

-- +goose Down
DROP INDEX notifications_one_cancellation;
DROP TABLE outbox;
