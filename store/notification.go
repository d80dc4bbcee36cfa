package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/notification"
)

// NotificationLease is how long a claim on an email keeps a concurrent
// duplicate from sending it too. It must exceed the SMTP send timeout.
const NotificationLease = 20 * time.Second

// ClaimNotification implements notification.Store. The claim is a lease:
// while one worker holds it, a concurrent duplicate gets
// a *notification.ClaimedError; once it expires (the first worker died), another
// worker may send.
func (db *DB) ClaimNotification(ctx context.Context, ev events.Event, kind, recipient, messageID string) (bool, error) {
	var status string
	err := db.pool.QueryRow(ctx, `
		INSERT INTO notifications (event_id, order_id, kind, recipient, message_id, status, lease_until)
		VALUES ($1::uuid, $2, $3, $4, $5, 'sending', now() + $6::interval)
		ON CONFLICT (event_id) DO UPDATE
			SET attempts = notifications.attempts + 1, lease_until = EXCLUDED.lease_until
			WHERE notifications.status = 'sending' AND notifications.lease_until < now()
		RETURNING status`,
		string(ev.EventID), ev.Order.OrderID, kind, recipient, messageID, NotificationLease.String()).Scan(&status)
	if errors.Is(err, pgx.ErrNoRows) {
		// Sent already, or claimed by someone else right now.
		var remainingMS int64
		err = db.pool.QueryRow(ctx, `
			SELECT status, coalesce((extract(epoch FROM lease_until - now()) * 1000)::bigint, 0)
			FROM notifications WHERE event_id = $1::uuid`, string(ev.EventID)).Scan(&status, &remainingMS)
		if err != nil {
			return false, fmt.Errorf("read notification %s: %w", ev.EventID, err)
		}
		if status == "sent" {
			return true, nil
		}
		return false, &notification.ClaimedError{Remaining: time.Duration(max(remainingMS, 0)) * time.Millisecond}
	}
	if err != nil {
		return false, fmt.Errorf("claim notification %s: %w", ev.EventID, err)
	}
	return false, nil
}

// AbandonNotification implements notification.Store.
func (db *DB) AbandonNotification(ctx context.Context, ev events.Event) error {
	_, err := db.pool.Exec(ctx, `
		UPDATE notifications SET lease_until = now() WHERE event_id = $1::uuid AND status = 'sending'`, string(ev.EventID))
	if err != nil {
		return fmt.Errorf("abandon notification %s: %w", ev.EventID, err)
	}
	return nil
}

// CompleteNotification implements notification.Store.
func (db *DB) CompleteNotification(ctx context.Context, ev events.Event) error {
	return db.inTx(ctx, func(t *txn) error {
		if _, err := t.tx.Exec(ctx, `
			UPDATE notifications SET status = 'sent', sent_at = now(), lease_until = NULL
			WHERE event_id = $1::uuid`, string(ev.EventID)); err != nil {
			return fmt.Errorf("record notification %s sent: %w", ev.EventID, err)
		}
		_, err := t.MarkProcessed(ctx, notification.Name, ev)
		return err
	})
}

// ProductNames implements notification.Store.
func (db *DB) ProductNames(ctx context.Context, skus []events.SKU) (map[events.SKU]string, error) {
	rows, err := db.pool.Query(ctx, `SELECT sku, name FROM products WHERE sku = ANY($1::text[])`, skuStrings(skus))
	if err != nil {
		return nil, fmt.Errorf("load product names: %w", err)
	}
	names := make(map[events.SKU]string, len(skus))
	var (
		sku  events.SKU
		name string
	)
	if _, err := pgx.ForEachRow(rows, []any{&sku, &name}, func() error { names[sku] = name; return nil }); err != nil {
		return nil, fmt.Errorf("load product names: %w", err)
	}
	for _, s := range skus {
		if _, ok := names[s]; !ok {
			return nil, fmt.Errorf("%w %q", notification.ErrUnknownSKU, s)
		}
	}
	return names, nil
}
