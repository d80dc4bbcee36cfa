package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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

// InventoryTx implements inventory.Store.
func (s *Inventory) InventoryTx(ctx context.Context, fn func(inventory.Tx) error) error {
	return s.db.inTx(ctx, func(t *txn) error { return fn(inventoryTx{t, s.outboxTopic}) })
}

// inventoryTx is the inventory handler's transaction; outboxTopic is what
// Emit writes on its rows.
type inventoryTx struct {
	*txn

	outboxTopic string
}

func (t inventoryTx) Reservation(ctx context.Context, orderID string) (inventory.Status, bool, error) {
	var s inventory.Status
	err := t.tx.QueryRow(ctx, `SELECT status FROM reservations WHERE order_id = $1`, orderID).Scan(&s)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("load reservation of order %s: %w", orderID, err)
	}
	return s, true, nil
}

// LockStock locks the product rows in SKU order: every transaction that
// touches several products takes their locks in the same order, so two
// orders cannot deadlock on each other.
func (t inventoryTx) LockStock(ctx context.Context, skus []events.SKU) (map[events.SKU]int, error) {
	rows, err := t.tx.Query(ctx, `SELECT sku, stock FROM products WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE`, skuStrings(skus))
	if err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	stock := make(map[events.SKU]int, len(skus))
	var (
		sku events.SKU
		n   int
	)
	if _, err := pgx.ForEachRow(rows, []any{&sku, &n}, func() error { stock[sku] = n; return nil }); err != nil {
		return nil, fmt.Errorf("lock stock: %w", err)
	}
	for _, s := range skus {
		if _, ok := stock[s]; !ok {
			return nil, fmt.Errorf("lock stock: %w", events.UnknownSKU(s))
		}
	}
	return stock, nil
}

func (t inventoryTx) Reserve(ctx context.Context, ev events.Event, lines []inventory.Line) error {
	skus, qtys := make([]string, len(lines)), make([]int32, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = string(l.SKU), int32(l.Quantity) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	_, err := t.tx.Exec(ctx, `
		WITH l AS (SELECT sku, qty FROM unnest($3::text[], $4::int[]) AS l(sku, qty)),
		upd AS (
			UPDATE products p SET stock = p.stock - l.qty, updated_at = now()
			FROM l WHERE p.sku = l.sku),
		mv AS (
			INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
			SELECT $1, $2::uuid, sku, -qty, 'reserve' FROM l)
		INSERT INTO reservations (order_id, event_id, status) VALUES ($1, $2::uuid, 'reserved')`,
		ev.Order.OrderID, string(ev.EventID), skus, qtys)
	if err != nil {
		return fmt.Errorf("reserve stock: %w", err)
	}
	return nil
}

func (t inventoryTx) Reject(ctx context.Context, ev events.Event, reason string) error {
	return t.insertReservation(ctx, ev, inventory.StatusRejected, reason)
}

func (t inventoryTx) MarkCancelled(ctx context.Context, ev events.Event) error {
	return t.insertReservation(ctx, ev, inventory.StatusCancelled, ev.Reason)
}

func (t inventoryTx) insertReservation(ctx context.Context, ev events.Event, s inventory.Status, reason string) error {
	_, err := t.tx.Exec(ctx, `
		INSERT INTO reservations (order_id, event_id, status, reason) VALUES ($1, $2::uuid, $3, NULLIF($4, ''))`,
		ev.Order.OrderID, string(ev.EventID), string(s), reason)
	if err != nil {
		return fmt.Errorf("record reservation %s: %w", s, err)
	}
	return nil
}

// Release puts back exactly what the order's reserve movements took, locking
// the product rows in SKU order first like every other stock change.
func (t inventoryTx) Release(ctx context.Context, ev events.Event) error {
	orderID := ev.Order.OrderID
	_, err := t.tx.Exec(ctx, `
		SELECT 1 FROM products WHERE sku IN (SELECT sku FROM stock_movements WHERE order_id = $1)
		ORDER BY sku FOR UPDATE`, orderID)
	if err != nil {
		return fmt.Errorf("lock stock to release order %s: %w", orderID, err)
	}
	_, err = t.tx.Exec(ctx, `
		WITH held AS (
			SELECT sku, -sum(delta)::int AS qty FROM stock_movements WHERE order_id = $1 GROUP BY sku HAVING sum(delta) < 0),
		upd AS (
			UPDATE products p SET stock = p.stock + held.qty, updated_at = now() FROM held WHERE p.sku = held.sku),
		mv AS (
			INSERT INTO stock_movements (order_id, event_id, sku, delta, kind)
			SELECT $1, $2::uuid, sku, qty, 'release' FROM held)
		UPDATE reservations SET status = 'released', reason = NULLIF($3, ''), updated_at = now() WHERE order_id = $1`,
		orderID, string(ev.EventID), ev.Reason)
	if err != nil {
		return fmt.Errorf("release stock of order %s: %w", orderID, err)
	}
	return nil
}
