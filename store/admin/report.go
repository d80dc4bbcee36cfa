// Package admin holds the operator's queries on the database: what the
// pipeline did (orderctl report, the tests' end-state checks) and the demo's
// seed and reset. The handlers never use it.
package admin

import (
	"context"
	"fmt"

	"github.com/orderpipe/orderpipe/store"
)

// Counts is what the database says about the pipeline.
type Counts struct {
	Orders            int64 `json:"orders"`             // distinct orders any handler processed
	Billed            int64 `json:"billed"`             // invoices issued (including those voided since)
	InvoicesVoided    int64 `json:"invoices_voided"`    // invoices voided by a cancellation
	BilledCents       int64 `json:"billed_cents"`       // sum of the totals of invoices still issued
	InventoryReserved int64 `json:"inventory_reserved"` // orders whose stock was reserved (and maybe released since)
	InventoryRejected int64 `json:"inventory_rejected"` // orders refused for lack of stock
	Notified          int64 `json:"notified"`           // emails sent, all kinds
	Confirmations     int64 `json:"confirmations"`      // order.placed emails sent
}

// ReadCounts reads the pipeline's counters in one snapshot.
func ReadCounts(ctx context.Context, db *store.DB) (Counts, error) {
	var c Counts
	err := db.Pool().QueryRow(ctx, `
		SELECT
			(SELECT count(DISTINCT order_id) FROM processed_events),
			(SELECT count(*) FROM invoices),
			(SELECT count(*) FROM invoices WHERE status = 'void'),
			(SELECT coalesce(sum(total_cents), 0) FROM invoices WHERE status = 'issued'),
			(SELECT count(*) FROM reservations WHERE status IN ('reserved', 'released')),
			(SELECT count(*) FROM reservations WHERE status = 'rejected'),
			(SELECT count(*) FROM notifications WHERE status = 'sent'),
			(SELECT count(*) FROM notifications WHERE status = 'sent' AND kind = 'order.placed')`).
		Scan(&c.Orders, &c.Billed, &c.InvoicesVoided, &c.BilledCents, &c.InventoryReserved, &c.InventoryRejected, &c.Notified, &c.Confirmations)
	if err != nil {
		return c, fmt.Errorf("read counts: %w", err)
	}
	return c, nil
}

// Order end states.
const (
	StateFulfilled           = "fulfilled"
	StateCancelledOutOfStock = "cancelled_out_of_stock"
	StateCancelledByCustomer = "cancelled_by_customer"
	StateInconsistent        = "inconsistent"
)

// OrderStates is every order's end state, as far as the three handlers
// have taken it.
type OrderStates struct {
	Fulfilled           int64    `json:"fulfilled"`
	CancelledOutOfStock int64    `json:"cancelled_out_of_stock"`
	CancelledByCustomer int64    `json:"cancelled_by_customer"`
	Inconsistent        int64    `json:"inconsistent"`
	InconsistentOrders  []string `json:"inconsistent_orders,omitempty"` // up to 20
	OutboxPending       int64    `json:"outbox_pending"`
}

// States classifies every order (optionally only those whose id starts with
// prefix): fulfilled (stock reserved, invoice issued), cancelled out of
// stock (rejected, no open invoice), cancelled by the customer (stock
// released or never taken, no open invoice); anything else — an open
// invoice for an order without stock, a cancelled order still invoiced, a
// handler that has not decided — is inconsistent. While messages are still
// in flight, some orders are inconsistent on their way; once the queues and
// the outbox are empty, none may be.
func States(ctx context.Context, db *store.DB, prefix string) (OrderStates, error) {
	var s OrderStates
	rows, err := db.Pool().Query(ctx, `
		WITH o AS (
			SELECT order_id FROM reservations UNION SELECT order_id FROM invoices UNION SELECT order_id FROM billing_cancellations),
		st AS (
			SELECT o.order_id,
				CASE
					WHEN r.status = 'reserved' AND i.status = 'issued' AND bc.order_id IS NULL THEN 'fulfilled'
					WHEN r.status = 'rejected' AND coalesce(i.status, 'void') = 'void' AND bc.order_id IS NOT NULL THEN 'cancelled_out_of_stock'
					WHEN r.status IN ('released', 'cancelled') AND coalesce(i.status, 'void') = 'void' AND bc.order_id IS NOT NULL THEN 'cancelled_by_customer'
					ELSE 'inconsistent'
				END AS state
			FROM o LEFT JOIN reservations r USING (order_id) LEFT JOIN invoices i USING (order_id)
			     LEFT JOIN billing_cancellations bc USING (order_id)
			WHERE o.order_id LIKE $1 || '%')
		SELECT state, count(*), (array_agg(order_id ORDER BY order_id))[1:20] FROM st GROUP BY state`, prefix)
	if err != nil {
		return s, fmt.Errorf("order states: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			state string
			n     int64
			ids   []string
		)
		if err := rows.Scan(&state, &n, &ids); err != nil {
			return s, fmt.Errorf("order states: %w", err)
		}
		switch state {
		case StateFulfilled:
			s.Fulfilled = n
		case StateCancelledOutOfStock:
			s.CancelledOutOfStock = n
		case StateCancelledByCustomer:
			s.CancelledByCustomer = n
		default:
			s.Inconsistent, s.InconsistentOrders = n, ids
		}
	}
	if err := rows.Err(); err != nil {
		return s, fmt.Errorf("order states: %w", err)
	}
	s.OutboxPending, err = OutboxPending(ctx, db, prefix)
	return s, err
}

// OutboxPending counts the unsent outbox rows of every topic whose order id
// starts with prefix ("" for all).
func OutboxPending(ctx context.Context, db *store.DB, prefix string) (int64, error) {
	var n int64
	if err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL AND order_id LIKE $1 || '%'`, prefix).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	return n, nil
}
