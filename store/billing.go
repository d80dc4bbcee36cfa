package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
)

// Billing is the database side of the billing handler (billing.Store).
type Billing struct{ db *DB }

// NewBilling returns billing's adapter on db.
func NewBilling(db *DB) *Billing { return &Billing{db: db} }

// BillingTx implements billing.Store.
func (b *Billing) BillingTx(ctx context.Context, fn func(billing.Tx) error) error {
	return b.db.inTx(ctx, func(t *txn) error { return fn(billingTx{t}) })
}

type billingTx struct{ *txn }

func (t billingTx) Coupon(ctx context.Context, code string) (catalog.Coupon, bool, error) {
	var (
		c              catalog.Coupon
		from, until    *time.Time
		maxRedemptions *int
	)
	err := t.tx.QueryRow(ctx, `
		SELECT code, kind, percent_bp, amount_off_cents, min_order_cents, valid_from, valid_until, max_redemptions, redemptions
		FROM coupons WHERE code = $1`, code).
		Scan(&c.Code, &c.Kind, &c.PercentBP, &c.AmountOff, &c.MinOrder, &from, &until, &maxRedemptions, &c.Redemptions)
	if errors.Is(err, pgx.ErrNoRows) {
		return c, false, nil
	}
	if err != nil {
		return c, false, fmt.Errorf("load coupon %s: %w", code, err)
	}
	c.ValidFrom, c.ValidUntil, c.MaxRedemptions = from, until, maxRedemptions
	return c, true, nil
}

// RedeemCoupon counts the redemption in one statement: the row lock on the
// coupon serialises concurrent orders, so the limit holds exactly.
func (t billingTx) RedeemCoupon(ctx context.Context, code, orderID string) (bool, error) {
	tag, err := t.tx.Exec(ctx, `
		WITH c AS (
			UPDATE coupons SET redemptions = redemptions + 1
			WHERE code = $1 AND (max_redemptions IS NULL OR redemptions < max_redemptions)
			RETURNING code)
		INSERT INTO coupon_redemptions (code, order_id) SELECT code, $2 FROM c`, code, orderID)
	if err != nil {
		return false, fmt.Errorf("redeem coupon %s for order %s: %w", code, orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}

func (t billingTx) ReleaseCoupon(ctx context.Context, orderID string) error {
	_, err := t.tx.Exec(ctx, `
		WITH r AS (DELETE FROM coupon_redemptions WHERE order_id = $1 RETURNING code)
		UPDATE coupons SET redemptions = redemptions - 1 WHERE code IN (SELECT code FROM r)`, orderID)
	if err != nil {
		return fmt.Errorf("release coupon of order %s: %w", orderID, err)
	}
	return nil
}

func (t billingTx) OrderState(ctx context.Context, orderID string) (invoiced, cancelled bool, err error) {
	err = t.tx.QueryRow(ctx, `
		SELECT EXISTS (SELECT 1 FROM invoices WHERE order_id = $1),
		       EXISTS (SELECT 1 FROM billing_cancellations WHERE order_id = $1)`, orderID).Scan(&invoiced, &cancelled)
	if err != nil {
		return false, false, fmt.Errorf("billing state of order %s: %w", orderID, err)
	}
	return invoiced, cancelled, nil
}

// CreateInvoice takes the next number from the counter row and writes the
// invoice and its lines in one statement. The counter's row lock is the one
// hot spot of billing, so it is taken last and held only to the commit.
func (t billingTx) CreateInvoice(ctx context.Context, inv billing.Invoice) (int64, error) {
	n := len(inv.Lines)
	lineNo, skus, names := make([]int32, n), make([]string, n), make([]string, n)
	prices, qtys, totals := make([]int64, n), make([]int32, n), make([]int64, n)
	for i, l := range inv.Lines {
		lineNo[i], skus[i], names[i] = int32(i+1), string(l.SKU), l.Name
		prices[i], qtys[i], totals[i] = int64(l.UnitPrice), int32(l.Quantity), int64(l.Total) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	var number int64
	err := t.tx.QueryRow(ctx, `
		WITH n AS (UPDATE invoice_counter SET last = last + 1 RETURNING last),
		inv AS (
			INSERT INTO invoices (invoice_number, order_id, event_id, customer_id, currency,
			                      subtotal_cents, discount_cents, total_cents, coupon_code, coupon_note, status)
			SELECT last, $1, $2::uuid, $3, $4, $5, $6, $7, NULLIF($8, ''), NULLIF($9, ''), 'issued' FROM n
			RETURNING invoice_number),
		lines AS (
			INSERT INTO invoice_lines (invoice_number, line_no, sku, name, unit_price_cents, quantity, line_total_cents)
			SELECT inv.invoice_number, l.* FROM inv,
			       unnest($10::int[], $11::text[], $12::text[], $13::bigint[], $14::int[], $15::bigint[]) AS l)
		SELECT invoice_number FROM inv`,
		inv.OrderID, string(inv.EventID), inv.CustomerID, inv.Currency,
		int64(inv.Subtotal), int64(inv.Discount), int64(inv.Total), inv.CouponCode, inv.CouponNote,
		lineNo, skus, names, prices, qtys, totals).Scan(&number)
	if err != nil {
		return 0, fmt.Errorf("create invoice for order %s: %w", inv.OrderID, err)
	}
	return number, nil
}

func (t billingTx) Cancel(ctx context.Context, ev events.Event, reason string) (bool, error) {
	orderID := ev.Order.OrderID
	if _, err := t.tx.Exec(ctx, `
		INSERT INTO billing_cancellations (order_id, event_id, reason) VALUES ($1, $2::uuid, $3)
		ON CONFLICT DO NOTHING`, orderID, string(ev.EventID), reason); err != nil {
		return false, fmt.Errorf("record cancellation of order %s: %w", orderID, err)
	}
	tag, err := t.tx.Exec(ctx, `
		UPDATE invoices SET status = 'void', voided_at = now(), void_reason = $2
		WHERE order_id = $1 AND status = 'issued'`, orderID, reason)
	if err != nil {
		return false, fmt.Errorf("void invoice of order %s: %w", orderID, err)
	}
	return tag.RowsAffected() == 1, nil
}
