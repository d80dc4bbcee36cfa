package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/events"
)

// ErrNoOutboxTopic is returned by Emit and RelayOutbox when the store was
// opened without Config.OutboxTopic.
var ErrNoOutboxTopic = errors.New("store: no outbox topic configured (Config.OutboxTopic)")

// Emit implements inventory.Tx: the event goes to the outbox, for this
// store's topic, in the caller's transaction. Emitting the same event again
// is a no-op.
func (t inventoryTx) Emit(ctx context.Context, ev events.Event) error {
	if t.outboxTopic == "" {
		return fmt.Errorf("outbox %s: %w", ev.EventID, ErrNoOutboxTopic)
	}
	body, err := events.Encode(ev)
	if err != nil {
		return fmt.Errorf("outbox %s: %w", ev.EventID, err)
	}
	if _, err := t.tx.Exec(ctx, `
		INSERT INTO outbox (event_id, event_type, body, topic, order_id) VALUES ($1::uuid, $2, $3, $4, $5)
		ON CONFLICT (event_id) DO NOTHING`, string(ev.EventID), string(ev.EventType), string(body), t.outboxTopic, ev.Order.OrderID); err != nil {
		return fmt.Errorf("outbox %s: %w", ev.EventID, err)
	}
	return nil
}

// OutboxMessage is one unsent outbox row.
type OutboxMessage struct {
	ID        int64
	EventID   string
	EventType string
	Body      string
}

// ErrRelayBusy is returned by RelayOutbox while another worker relays.
var ErrRelayBusy = errors.New("another worker is relaying the outbox")

// RelayOutbox hands up to limit unsent rows of this store's topic, oldest
// first, to publish, and marks them sent when it returns nil — all in one
// transaction under a transaction-scoped advisory lock (one per topic), so
// one worker relays a topic at a time and rows go out in the order they
// were written. If publish fails or the worker
// dies before the commit, the rows stay unsent and go out again: at least
// once, and the handlers' idempotency absorbs the repeat.
func (db *DB) RelayOutbox(ctx context.Context, limit int, publish func([]OutboxMessage) error) (int, error) {
	if db.outboxTopic == "" {
		return 0, ErrNoOutboxTopic
	}
	n := 0
	err := db.inTx(ctx, func(t *txn) error {
		var locked bool
		if err := t.tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock(hashtextextended('orderpipe:outbox-relay:' || $1, 0))`, db.outboxTopic).Scan(&locked); err != nil {
			return fmt.Errorf("outbox relay lock: %w", err)
		}
		if !locked {
			return ErrRelayBusy
		}
		rows, err := t.tx.Query(ctx, `SELECT id, event_id::text, event_type, body FROM outbox WHERE topic = $1 AND sent_at IS NULL ORDER BY id LIMIT $2`, db.outboxTopic, limit)
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		msgs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[OutboxMessage])
		if err != nil {
			return fmt.Errorf("read outbox: %w", err)
		}
		if len(msgs) == 0 {
			return nil
		}
		if err := publish(msgs); err != nil {
			return err
		}
		ids := make([]int64, len(msgs))
		for i, m := range msgs {
			ids[i] = m.ID
		}
		if _, err := t.tx.Exec(ctx, `UPDATE outbox SET sent_at = now() WHERE id = ANY($1)`, ids); err != nil {
			return fmt.Errorf("mark outbox sent: %w", err)
		}
		n = len(msgs)
		return nil
	})
	return n, err
}

// OutboxPending counts the unsent rows of every topic whose order id
// starts with prefix ("" for all).
func (db *DB) OutboxPending(ctx context.Context, prefix string) (int64, error) {
	var n int64
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM outbox WHERE sent_at IS NULL AND order_id LIKE $1 || '%'`, prefix).Scan(&n); err != nil {
		return 0, fmt.Errorf("count outbox: %w", err)
	}
	return n, nil
}
