package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/events"
)

// txn holds the statements every handler's transaction shares.
type txn struct {
	tx pgx.Tx
}

// MarkProcessed writes the (handler, event) ledger row with the payload's
// fingerprint. A concurrent duplicate blocks on the primary key until the
// first commits, then sees the conflict: at most one of them applies the
// effect. A known event_id with a different fingerprint is an
// events.ErrConflict, never a silent skip.
func (t *txn) MarkProcessed(ctx context.Context, handler string, ev events.Event) (bool, error) {
	fp := events.Fingerprint(ev)
	tag, err := t.tx.Exec(ctx, `
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
		VALUES ($1, $2::uuid, $3, $4, $5)
		ON CONFLICT DO NOTHING`,
		handler, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp[:])
	if err != nil {
		return false, fmt.Errorf("mark %s processed by %s: %w", ev.EventID, handler, err)
	}
	if tag.RowsAffected() == 1 {
		return true, nil
	}
	// A second statement: in READ COMMITTED it sees the row the INSERT
	// waited for, which the INSERT's own snapshot could not.
	var known []byte
	if err := t.tx.QueryRow(ctx, `SELECT fingerprint FROM processed_events WHERE handler = $1 AND event_id = $2::uuid`,
		handler, string(ev.EventID)).Scan(&known); err != nil {
		return false, fmt.Errorf("read ledger of %s for %s: %w", ev.EventID, handler, err)
	}
	if known != nil && !bytes.Equal(known, fp[:]) {
		return false, fmt.Errorf("%s for %s: %w", ev.EventID, handler, events.ErrConflict)
	}
	return false, nil
}

// LockOrder takes a transaction-scoped advisory lock on (handler, order), so
// that two events of one order (placed and cancelled, say) are decided one
// after the other. Transaction-scoped: safe behind a transaction pooler.
func (t *txn) LockOrder(ctx context.Context, handler, orderID string) error {
	if _, err := t.tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, handler+":"+orderID); err != nil {
		return fmt.Errorf("lock order %s for %s: %w", orderID, handler, err)
	}
	return nil
}

func skuStrings(skus []events.SKU) []string {
	s := make([]string, len(skus))
	for i, sku := range skus {
		s[i] = string(sku)
	}
	return s
}
