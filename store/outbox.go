package store

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ErrNoOutboxTopic is returned by Inventory.Reserve and the Outbox when no
// topic was given (NewInventory, NewOutbox).
var ErrNoOutboxTopic = errors.New("store: no outbox topic given")

// OutboxMessage is one unsent outbox row.
type OutboxMessage struct {
	ID        int64
	EventID   string
	EventType string
	Body      string
	OrderID   string
	// TraceParent and TraceState are the W3C trace context of the handler
	// that wrote the row (empty when it was not traced): its publish
	// continues that trace.
	TraceParent, TraceState string
}

// TraceContext is the row's trace context as message attributes name it,
// or nil.
func (m OutboxMessage) TraceContext() map[string]string {
	if m.TraceParent == "" {
		return nil
	}
	c := map[string]string{"traceparent": m.TraceParent}
	if m.TraceState != "" {
		c["tracestate"] = m.TraceState
	}
	return c
}

// Outbox is the relay's side of the outbox: the rows of one topic.
type Outbox struct {
	db    *DB
	topic string
}

// NewOutbox returns the outbox rows of topic on db.
func NewOutbox(db *DB, topic string) *Outbox { return &Outbox{db: db, topic: topic} }

// Lease takes up to limit unsent rows of the topic, oldest
// first, that no other relay holds, and holds them for lease: one statement,
// committed at once. The relay publishes them holding no transaction and no
// connection, then marks them sent (MarkOutboxSent) or gives them back
// (ReleaseOutbox); if it dies meanwhile the lease runs out and another relay
// takes them: at least once, and the handlers' idempotency absorbs the
// repeat.
func (o *Outbox) Lease(ctx context.Context, limit int, lease time.Duration) ([]OutboxMessage, error) {
	if o.topic == "" {
		return nil, ErrNoOutboxTopic
	}
	var msgs []OutboxMessage
	err := o.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, `
			UPDATE outbox SET lease_until = now() + $3 * interval '1 millisecond'
			WHERE id IN (
				SELECT id FROM outbox
				WHERE topic = $1 AND sent_at IS NULL AND (lease_until IS NULL OR lease_until < now())
				ORDER BY id LIMIT $2
				FOR UPDATE SKIP LOCKED)
			RETURNING id, event_id::text, event_type, body, order_id, coalesce(traceparent, ''), coalesce(tracestate, '')`, o.topic, limit, lease.Milliseconds())
		if err != nil {
			return fmt.Errorf("lease: %w", err)
		}
		if msgs, err = pgx.CollectRows(rows, pgx.RowToStructByPos[OutboxMessage]); err != nil {
			return fmt.Errorf("read leased rows: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lease outbox rows of %s: %w", o.topic, err)
	}
	slices.SortFunc(msgs, func(a, b OutboxMessage) int { return cmp.Compare(a.ID, b.ID) })
	return msgs, nil
}

// MarkSent marks leased rows published.
func (o *Outbox) MarkSent(ctx context.Context, ids []int64) error {
	if err := o.db.exec(ctx, `UPDATE outbox SET sent_at = now(), lease_until = NULL WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("mark %d outbox rows sent: %w", len(ids), err)
	}
	return nil
}

// Release gives leased rows back unsent, for the next relay to try.
func (o *Outbox) Release(ctx context.Context, ids []int64) error {
	if err := o.db.exec(ctx, `UPDATE outbox SET lease_until = NULL WHERE id = ANY($1) AND sent_at IS NULL`, ids); err != nil {
		return fmt.Errorf("release %d outbox rows: %w", len(ids), err)
	}
	return nil
}
