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

// invoiceCall is orderpipe_invoice's (see the migration): after the
// ledger's six, customer, currency, subtotal, candidate discount, coupon
// code, coupon note, limit note, then the lines.
const invoiceCall = `SELECT r_first, r_known, r_number, r_discount FROM orderpipe_invoice($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::text, $8::text, $9::bigint, $10::bigint, $11::text, $12::text, $13::text, $14::int[], $15::text[], $16::text[], $17::bigint[], $18::int[], $19::bigint[])`

// Invoice implements billing.Store, in one round trip (see once).
func (b *Billing) Invoice(ctx context.Context, ev events.Event, inv billing.Invoice) (billing.Issued, error) {
	n := len(inv.Lines)
	lineNo, skus, names := make([]int32, n), make([]string, n), make([]string, n)
	prices, qtys, totals := make([]int64, n), make([]int32, n), make([]int64, n)
	for i, l := range inv.Lines {
		lineNo[i], skus[i], names[i] = int32(i+1), string(l.SKU), l.Name
		prices[i], qtys[i], totals[i] = int64(l.UnitPrice), int32(l.Quantity), int64(l.Total) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	args := append(ledgerArgs(ctx, billing.Name, ev),
		inv.CustomerID, inv.Currency, int64(inv.Subtotal), int64(inv.Discount), inv.CouponCode, inv.CouponNote,
		billing.ErrCouponLimitReached.Error(), lineNo, skus, names, prices, qtys, totals)
	var (
		issued   billing.Issued
		discount int64
	)
	first, err := b.db.once(ctx, billing.Name, ev, invoiceCall, args, &issued.Number, &discount)
	if err != nil {
		return billing.Issued{}, fmt.Errorf("invoice order %s: %w", ev.Order.OrderID, err)
	}
	issued.New, issued.Discount = first, catalog.Cents(discount)
	return issued, nil
}

// cancelCall is orderpipe_cancel_invoice's: after the ledger's six, the
// reason. An invoice is voided and its coupon redemption given back; a
// cancellation seen first means the order is never invoiced.
const cancelCall = `SELECT r_first, r_known, r_voided FROM orderpipe_cancel_invoice($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::text)`

// Cancel implements billing.Store, in one round trip (see once).
func (b *Billing) Cancel(ctx context.Context, ev events.Event, reason string) (bool, error) {
	var voided bool
	_, err := b.db.once(ctx, billing.Name, ev, cancelCall, append(ledgerArgs(ctx, billing.Name, ev), reason), &voided)
	if err != nil {
		return false, fmt.Errorf("void invoice of order %s: %w", ev.Order.OrderID, err)
	}
	return voided, nil
}
