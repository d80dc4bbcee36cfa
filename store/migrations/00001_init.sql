-- +goose Up
-- Catalog: prices in integer cents; stock can never go negative.
CREATE TABLE products (
    sku         text PRIMARY KEY,
    name        text NOT NULL,
    price_cents bigint NOT NULL CHECK (price_cents >= 0),
    stock       integer NOT NULL CHECK (stock >= 0),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE coupons (
    code             text PRIMARY KEY,
    kind             text NOT NULL CHECK (kind IN ('percent', 'fixed')),
    percent_bp       bigint NOT NULL DEFAULT 0 CHECK (percent_bp BETWEEN 0 AND 10000),
    amount_off_cents bigint NOT NULL DEFAULT 0 CHECK (amount_off_cents >= 0),
    min_order_cents  bigint NOT NULL DEFAULT 0 CHECK (min_order_cents >= 0),
    valid_from       timestamptz,
    valid_until      timestamptz,
    max_redemptions  integer CHECK (max_redemptions >= 0),
    redemptions      integer NOT NULL DEFAULT 0 CHECK (redemptions >= 0),
    CHECK (max_redemptions IS NULL OR redemptions <= max_redemptions),
    CHECK ((kind = 'percent' AND percent_bp > 0) OR (kind = 'fixed' AND amount_off_cents > 0))
);

-- The exactly-once ledger: a row per (handler, event) written in the same
-- transaction as the handler's effect.
CREATE TABLE processed_events (
    handler      text NOT NULL,
    event_id     uuid NOT NULL,
    event_type   text NOT NULL,
    order_id     text NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (handler, event_id)
);
CREATE INDEX processed_events_order ON processed_events (order_id);

-- Billing. Invoice numbers are gapless: taken from a counter row in the
-- issuing transaction, so a rolled-back invoice does not burn a number.
CREATE TABLE invoice_counter (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    last bigint NOT NULL
);
INSERT INTO invoice_counter VALUES (true, 0);

CREATE TABLE invoices (
    invoice_number  bigint PRIMARY KEY,
    order_id        text NOT NULL UNIQUE,
    event_id        uuid NOT NULL,
    customer_id     text NOT NULL,
    currency        text NOT NULL,
    subtotal_cents  bigint NOT NULL CHECK (subtotal_cents >= 0),
    discount_cents  bigint NOT NULL CHECK (discount_cents >= 0),
    total_cents     bigint NOT NULL CHECK (total_cents >= 0),
    coupon_code     text,
    coupon_note     text,
    status          text NOT NULL CHECK (status IN ('issued', 'void')),
    issued_at       timestamptz NOT NULL DEFAULT now(),
    voided_at       timestamptz,
    void_reason     text,
    CHECK (total_cents = subtotal_cents - discount_cents)
);

CREATE TABLE invoice_lines (
    invoice_number   bigint NOT NULL REFERENCES invoices (invoice_number),
    line_no          integer NOT NULL,
    sku              text NOT NULL,
    name             text NOT NULL,
    unit_price_cents bigint NOT NULL,
    quantity         integer NOT NULL CHECK (quantity > 0),
    line_total_cents bigint NOT NULL,
    PRIMARY KEY (invoice_number, line_no),
    CHECK (line_total_cents = unit_price_cents * quantity)
);

CREATE TABLE coupon_redemptions (
    code        text NOT NULL REFERENCES coupons (code),
    order_id    text NOT NULL UNIQUE,
    redeemed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (code, order_id)
);

-- A cancellation billing saw before (or after) the order: a late
-- order.placed for it issues no invoice.
CREATE TABLE billing_cancellations (
    order_id     text PRIMARY KEY,
    event_id     uuid NOT NULL,
    reason       text NOT NULL,
    cancelled_at timestamptz NOT NULL DEFAULT now()
);

-- Inventory: one reservation per order, all items or none.
CREATE TABLE reservations (
    order_id    text PRIMARY KEY,
    event_id    uuid NOT NULL,
    status      text NOT NULL CHECK (status IN ('reserved', 'rejected', 'released', 'cancelled')),
    reason      text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE stock_movements (
    id         bigserial PRIMARY KEY,
    order_id   text NOT NULL,
    event_id   uuid NOT NULL,
    sku        text NOT NULL REFERENCES products (sku),
    delta      integer NOT NULL CHECK (delta <> 0),
    kind       text NOT NULL CHECK (kind IN ('reserve', 'release')),
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX stock_movements_order ON stock_movements (order_id);

-- Notifications: one row per event, claimed before the SMTP send and marked
-- sent after it, so a redelivery after a recorded send sends nothing.
CREATE TABLE notifications (
    event_id   uuid PRIMARY KEY,
    order_id   text NOT NULL,
    kind       text NOT NULL,
    recipient  text NOT NULL,
    message_id text NOT NULL,
    status     text NOT NULL CHECK (status IN ('sending', 'sent')),
    attempts   integer NOT NULL DEFAULT 1,
    lease_until timestamptz,
    created_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz
);
CREATE INDEX notifications_order ON notifications (order_id);

-- +goose Down
DROP TABLE notifications, stock_movements, reservations, billing_cancellations,
    coupon_redemptions, invoice_lines, invoices, invoice_counter,
    processed_events, coupons, products;
