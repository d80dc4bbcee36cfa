package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
)

// Billing is the database side of the billing handler (billing.Store).
type Billing struct{ db *DB }

// NewBilling returns billing's adapter on db.
func NewBilling(db *DB) *Billing { return &Billing{db: db} }

// Coupon implements billing.Store: a plain read, before the order's
// transaction (the redemption limit is enforced in it).
func (b *Billing) Coupon(ctx context.Context, code string) (catalog.Coupon, bool, error) {
	var (
		c              catalog.Coupon
		found          bool
		from, until    *time.Time
		maxRedemptions *int
	)
	err := b.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, `
			SELECT code, kind, percent_bp, amount_off_cents, min_order_cents, valid_from, valid_until, max_redemptions, redemptions
			FROM coupons WHERE code = $1`, code).
			Scan(&c.Code, &c.Kind, &c.PercentBP, &c.AmountOff, &c.MinOrder, &from, &until, &maxRedemptions, &c.Redemptions)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			return nil
		case err != nil:
			return fmt.Errorf("query: %w", err)
		}
		found = true
		return nil
	})
	if err != nil {
		return c, false, fmt.Errorf("load coupon %s: %w", code, err)
	}
	c.ValidFrom, c.ValidUntil, c.MaxRedemptions = from, until, maxRedemptions
	return c, found, nil
}

// invoiceStatement issues the invoice of a new order.placed unless billing
// has invoiced the order or seen it cancelled. The coupon's redemption is
// counted in the same statement, within its limit, atomically (the UPDATE
// re-checks the limit on the row as it is when it gets its lock); if the
// limit is reached the invoice is issued at full price with the
// limit-reached note. The number comes from the counter row, whose lock is
// taken only when an invoice is issued and held to the commit: numbers stay
// gapless. Arguments after ledgerArgs: customer, currency, subtotal,
// candidate discount, coupon code, coupon note, limit note, then the lines.
const invoiceStatement = `WITH ` + ledgerCTE + `,
	open AS (
		SELECT 1 FROM ledger
		WHERE NOT EXISTS (SELECT 1 FROM invoices WHERE order_id = $4)
		  AND NOT EXISTS (SELECT 1 FROM billing_cancellations WHERE order_id = $4)),
	redeemed AS (
		UPDATE coupons SET redemptions = redemptions + 1
		WHERE code = $10 AND $9::bigint > 0 AND EXISTS (SELECT 1 FROM open)
		  AND (max_redemptions IS NULL OR redemptions < max_redemptions)
		RETURNING code),
	redemption AS (
		INSERT INTO coupon_redemptions (code, order_id) SELECT code, $4 FROM redeemed),
	terms AS (
		SELECT CASE WHEN r.code IS NULL THEN 0 ELSE $9::bigint END AS discount, r.code,
		       CASE WHEN r.code IS NULL AND $9::bigint > 0 THEN $12 ELSE NULLIF($11, '') END AS note
		FROM open LEFT JOIN redeemed r ON true),
	n AS (UPDATE invoice_counter SET last = last + 1 WHERE EXISTS (SELECT 1 FROM open) RETURNING last),
	inv AS (
		INSERT INTO invoices (invoice_number, order_id, event_id, customer_id, currency,
		                      subtotal_cents, discount_cents, total_cents, coupon_code, coupon_note, status)
		SELECT n.last, $4, $2::uuid, $6, $7, $8, t.discount, $8::bigint - t.discount, t.code, t.note, 'issued'
		FROM n, terms t
		RETURNING invoice_number, discount_cents),
	lines AS (
		INSERT INTO invoice_lines (invoice_number, line_no, sku, name, unit_price_cents, quantity, line_total_cents)
		SELECT inv.invoice_number, l.* FROM inv,
		       unnest($13::int[], $14::text[], $15::text[], $16::bigint[], $17::int[], $18::bigint[]) AS l)
	SELECT EXISTS (SELECT 1 FROM ledger), coalesce((SELECT invoice_number FROM inv), 0), coalesce((SELECT discount_cents FROM inv), 0)`

// Invoice implements billing.Store, in one round trip (see once).
func (b *Billing) Invoice(ctx context.Context, ev events.Event, inv billing.Invoice) (billing.Issued, error) {
	n := len(inv.Lines)
	lineNo, skus, names := make([]int32, n), make([]string, n), make([]string, n)
	prices, qtys, totals := make([]int64, n), make([]int32, n), make([]int64, n)
	for i, l := range inv.Lines {
		lineNo[i], skus[i], names[i] = int32(i+1), string(l.SKU), l.Name
		prices[i], qtys[i], totals[i] = int64(l.UnitPrice), int32(l.Quantity), int64(l.Total) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	args := append(ledgerArgs(billing.Name, ev),
		inv.CustomerID, inv.Currency, int64(inv.Subtotal), int64(inv.Discount), inv.CouponCode, inv.CouponNote,
		billing.ErrCouponLimitReached.Error(), lineNo, skus, names, prices, qtys, totals)
	var (
		issued   billing.Issued
		discount int64
	)
	first, err := b.db.once(ctx, billing.Name, ev, nil, invoiceStatement, args, &issued.Number, &discount)
	if err != nil {
		return billing.Issued{}, fmt.Errorf("invoice order %s: %w", ev.Order.OrderID, err)
	}
	issued.New, issued.Discount = first, catalog.Cents(discount)
	return issued, nil
}

// cancelStatement records a new order.cancelled and voids the order's
// issued invoice, giving its coupon redemption back; a cancellation seen
// before the order means it is never invoiced (invoiceStatement's guard).
// Arguments after ledgerArgs: the reason.
const cancelStatement = `WITH ` + ledgerCTE + `,
	recorded AS (
		INSERT INTO billing_cancellations (order_id, event_id, reason)
		SELECT $4, $2::uuid, $6 FROM ledger ON CONFLICT DO NOTHING),
	voided AS (
		UPDATE invoices SET status = 'void', voided_at = now(), void_reason = $6
		WHERE order_id = $4 AND status = 'issued' AND EXISTS (SELECT 1 FROM ledger)
		RETURNING 1),
	given_back AS (
		DELETE FROM coupon_redemptions WHERE order_id = $4 AND EXISTS (SELECT 1 FROM voided) RETURNING code),
	released AS (
		UPDATE coupons SET redemptions = redemptions - 1 WHERE code IN (SELECT code FROM given_back))
	SELECT EXISTS (SELECT 1 FROM ledger), EXISTS (SELECT 1 FROM voided)`

// Cancel implements billing.Store, in one round trip (see once).
func (b *Billing) Cancel(ctx context.Context, ev events.Event, reason string) (bool, error) {
	var voided bool
	_, err := b.db.once(ctx, billing.Name, ev, nil, cancelStatement, append(ledgerArgs(billing.Name, ev), reason), &voided)
	if err != nil {
		return false, fmt.Errorf("void invoice of order %s: %w", ev.Order.OrderID, err)
	}
	return voided, nil
}
