package store

import (
	"context"
	"fmt"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/inventory"
)

// Inventory is the database side of the inventory handler
// (inventory.Store). Its outbox rows are for outboxTopic (the topic's name):
// the relay of that topic publishes them.
type Inventory struct {
	db          *DB
	outboxTopic string
}

// NewInventory returns inventory's adapter on db, emitting to outboxTopic.
func NewInventory(db *DB, outboxTopic string) *Inventory {
	return &Inventory{db: db, outboxTopic: outboxTopic}
}

// Every stock change locks its product rows in SKU order, in a statement
// before its effect (see rowLock): concurrent orders cannot deadlock, and
// the effect reads the stock it writes. A placement locks its lines' rows;
// a cancellation the rows its order's movements touched (the order's
// movements cannot change meanwhile: the order's lock is held).
const (
	reserveLock = `SELECT 1 FROM products WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE`
	releaseLock = `SELECT 1 FROM products WHERE sku IN (SELECT sku FROM stock_movements WHERE order_id = $1) ORDER BY sku FOR UPDATE`
)

// reserveStatement decides a new order.placed whose order has no
// reservation yet, its product rows locked by reserveLock: it either takes
// every line (stock movements, reservation 'reserved') or, if one line is
// short, takes nothing, records the reservation 'rejected' with the
// shortfall and writes the compensation (the order's cancellation) to the
// outbox. The rows being locked before its snapshot, the stock it checks is
// the stock it changes; the CHECK (stock >= 0) backs it. Arguments
// after ledgerArgs: the lines' SKUs (in SKU order) and quantities, the
// rejection reason's prefix, the compensation's event id, type and body,
// and the outbox topic.
const reserveStatement = `WITH ` + ledgerCTE + `,
	open AS (SELECT 1 FROM ledger WHERE NOT EXISTS (SELECT 1 FROM reservations WHERE order_id = $4)),
	want AS (SELECT sku, qty FROM unnest($6::text[], $7::int[]) AS w(sku, qty)),
	stock AS (SELECT p.sku, p.stock FROM products p WHERE p.sku = ANY($6::text[])),
	short AS (
		SELECT w.sku, w.qty, coalesce(l.stock, 0) AS stock FROM want w LEFT JOIN stock l USING (sku)
		WHERE coalesce(l.stock, 0) < w.qty),
	decided AS (
		SELECT NOT EXISTS (SELECT 1 FROM short) AS ok FROM open),
	taken AS (
		UPDATE products p SET stock = p.stock - w.qty, updated_at = now()
		FROM want w, decided d WHERE p.sku = w.sku AND d.ok
		RETURNING p.sku, w.qty),
	moved AS (
		INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
		SELECT $4, $2::uuid, sku, -qty, 'reserve' FROM taken),
	reserved AS (
		INSERT INTO reservations (order_id, event_id, status, reason)
		SELECT $4, $2::uuid, CASE WHEN d.ok THEN 'reserved' ELSE 'rejected' END,
		       CASE WHEN d.ok THEN NULL ELSE $8 || (
		           SELECT string_agg(format('%s (want %s, have %s)', sku, qty, stock), ', ' ORDER BY sku) FROM short) END
		FROM decided d
		RETURNING status),
	compensated AS (
		INSERT INTO outbox (event_id, event_type, body, topic, order_id)
		SELECT $9::uuid, $10, $11, $12, $4 FROM decided WHERE NOT ok
		ON CONFLICT (event_id) DO NOTHING)
	SELECT EXISTS (SELECT 1 FROM ledger), coalesce((SELECT status FROM reserved), '')`

// Reserve implements inventory.Store, in one round trip (see once).
func (s *Inventory) Reserve(ctx context.Context, ev events.Event, lines []inventory.Line, compensation events.Event) (inventory.Status, error) {
	if s.outboxTopic == "" {
		return "", fmt.Errorf("reserve stock for order %s: %w", ev.Order.OrderID, ErrNoOutboxTopic)
	}
	body, err := events.Encode(compensation)
	if err != nil {
		return "", fmt.Errorf("reserve stock for order %s: compensation: %w", ev.Order.OrderID, err)
	}
	skus, qtys := make([]string, len(lines)), make([]int32, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = string(l.SKU), int32(l.Quantity) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	args := append(ledgerArgs(inventory.Name, ev), skus, qtys, "insufficient_stock: ",
		string(compensation.EventID), string(compensation.EventType), string(body), s.outboxTopic)
	var status inventory.Status
	_, err = s.db.once(ctx, inventory.Name, ev, &rowLock{reserveLock, []any{skus}}, reserveStatement, args, &status)
	if err != nil {
		return "", fmt.Errorf("reserve stock for order %s: %w", ev.Order.OrderID, err)
	}
	return status, nil
}

// releaseStatement decides a new order.cancelled: a reserved order gets back
// exactly what its reserve movements took (its product rows locked first by
// releaseLock) and becomes 'released'; an order with no
// reservation yet is recorded 'cancelled', so its placement takes nothing; a
// rejected, released or cancelled order holds no stock. Arguments after
// ledgerArgs: the reason.
const releaseStatement = `WITH ` + ledgerCTE + `,
	prior AS (
		SELECT status FROM reservations WHERE order_id = $4 AND EXISTS (SELECT 1 FROM ledger)),
	held AS (
		SELECT sku, -sum(delta)::int AS qty FROM stock_movements
		WHERE order_id = $4 AND EXISTS (SELECT 1 FROM prior WHERE status = 'reserved')
		GROUP BY sku HAVING sum(delta) < 0),
	back AS (
		UPDATE products p SET stock = p.stock + h.qty, updated_at = now()
		FROM held h WHERE p.sku = h.sku),
	moved AS (
		INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
		SELECT $4, $2::uuid, sku, qty, 'release' FROM held),
	released AS (
		UPDATE reservations SET status = 'released', reason = NULLIF($6, ''), updated_at = now()
		WHERE order_id = $4 AND EXISTS (SELECT 1 FROM prior WHERE status = 'reserved')),
	first_cancelled AS (
		INSERT INTO reservations (order_id, event_id, status, reason)
		SELECT $4, $2::uuid, 'cancelled', NULLIF($6, '') FROM ledger WHERE NOT EXISTS (SELECT 1 FROM prior))
	SELECT EXISTS (SELECT 1 FROM ledger)`

// Release implements inventory.Store, in one round trip (see once).
func (s *Inventory) Release(ctx context.Context, ev events.Event) error {
	_, err := s.db.once(ctx, inventory.Name, ev, &rowLock{releaseLock, []any{ev.Order.OrderID}}, releaseStatement, append(ledgerArgs(inventory.Name, ev), ev.Reason))
	if err != nil {
		return fmt.Errorf("release stock of order %s: %w", ev.Order.OrderID, err)
	}
	return nil
}
