package admin

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/store"
)

// Seed inserts the catalog and coupons. Existing rows are left alone, so a
// second run changes nothing; Reset puts them back to these values.
func Seed(ctx context.Context, db *store.DB, products []catalog.Product, coupons []catalog.Coupon) error {
	if err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error { return seed(ctx, tx, products, coupons, false) }); err != nil {
		return fmt.Errorf("admin: seed: %w", err)
	}
	return nil
}

// Reset empties every order table, restarts invoice numbering and puts
// stock, prices and coupons back to the seed values. For demos and tests:
// never run it against production.
func Reset(ctx context.Context, db *store.DB, products []catalog.Product, coupons []catalog.Coupon) error {
	return ResetKeepingLedger(ctx, db, products, coupons, "")
}

// ResetKeepingLedger is Reset that keeps the ledger rows whose order_id
// starts with keep (a benchmark's pre-filled ledger: rows written straight
// into the table, which a TRUNCATE would throw away); "" keeps none.
func ResetKeepingLedger(ctx context.Context, db *store.DB, products []catalog.Product, coupons []catalog.Coupon, keep string) error {
	if err := pgx.BeginFunc(ctx, db.Pool(), func(tx pgx.Tx) error {
		ledger, args := `TRUNCATE processed_events`, []any{}
		if keep != "" {
			ledger, args = `DELETE FROM processed_events WHERE NOT starts_with(order_id, $1)`, []any{keep}
		}
		if _, err := tx.Exec(ctx, ledger, args...); err != nil {
			return fmt.Errorf("empty the ledger: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			TRUNCATE invoice_lines, invoices, coupon_redemptions, billing_cancellations,
			         reservations, stock_movements, notifications, outbox;
			UPDATE invoice_counter SET last = 0`); err != nil {
			return fmt.Errorf("empty the order tables: %w", err)
		}
		return seed(ctx, tx, products, coupons, true)
	}); err != nil {
		return fmt.Errorf("admin: reset: %w", err)
	}
	return nil
}

func seed(ctx context.Context, tx pgx.Tx, products []catalog.Product, coupons []catalog.Coupon, overwrite bool) error {
	onConflict := "DO NOTHING"
	if overwrite {
		onConflict = "DO UPDATE SET name = EXCLUDED.name, price_cents = EXCLUDED.price_cents, stock = EXCLUDED.stock, version = products.version + 1, updated_at = now()"
	}
	b := &pgx.Batch{}
	for _, p := range products {
		b.Queue(`INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4) ON CONFLICT (sku) `+onConflict,
			string(p.SKU), p.Name, int64(p.Price), p.Stock)
	}
	couponConflict := "DO NOTHING"
	if overwrite {
		couponConflict = `DO UPDATE SET kind = EXCLUDED.kind, percent_bp = EXCLUDED.percent_bp,
			amount_off_cents = EXCLUDED.amount_off_cents, min_order_cents = EXCLUDED.min_order_cents,
			valid_from = EXCLUDED.valid_from, valid_until = EXCLUDED.valid_until,
			max_redemptions = EXCLUDED.max_redemptions, redemptions = 0`
	}
	for _, c := range coupons {
		b.Queue(`INSERT INTO coupons (code, kind, percent_bp, amount_off_cents, min_order_cents, valid_from, valid_until, max_redemptions)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (code) `+couponConflict,
			c.Code, string(c.Kind), c.PercentBP, int64(c.AmountOff), int64(c.MinOrder), c.ValidFrom, c.ValidUntil, c.MaxRedemptions)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("seed catalog: %w", err)
	}
	return nil
}
