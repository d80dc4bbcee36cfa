package store

import (
	"context"
	"fmt"
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

// Counts reads the pipeline's counters in one snapshot.
func (db *DB) Counts(ctx context.Context) (Counts, error) {
	var c Counts
	err := db.pool.QueryRow(ctx, `
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
