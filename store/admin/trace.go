package admin

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/store"
)

// OrderTrace is what the database recorded of one order's traces: each
// event a handler processed, with the trace its effect was part of, and
// each compensation written to the outbox, with the trace its publish
// continues (`orderctl trace`).
type OrderTrace struct {
	OrderID string
	Events  []TracedEvent
	Outbox  []TracedOutbox
}

// TracedEvent is one ledger row: a handler's effect for one event.
type TracedEvent struct {
	Handler     string
	EventID     string
	EventType   string
	ProcessedAt time.Time
	TraceID     string // empty: not traced (tracing off, or not sampled)
}

// TracedOutbox is one outbox row of the order.
type TracedOutbox struct {
	EventID   string
	EventType string
	CreatedAt time.Time
	SentAt    *time.Time
	TraceID   string // from its traceparent; empty: not traced
}

// ReadOrderTrace reads the order's ledger and outbox rows, oldest first.
func ReadOrderTrace(ctx context.Context, db *store.DB, orderID string) (OrderTrace, error) {
	ot := OrderTrace{OrderID: orderID}
	rows, err := db.Pool().Query(ctx, `
		SELECT handler, event_id::text, event_type, processed_at, coalesce(trace_id, '')
		FROM processed_events WHERE order_id = $1 ORDER BY processed_at, handler`, orderID)
	if err != nil {
		return ot, fmt.Errorf("read the ledger of order %s: %w", orderID, err)
	}
	if ot.Events, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TracedEvent]); err != nil {
		return ot, fmt.Errorf("read the ledger of order %s: %w", orderID, err)
	}
	rows, err = db.Pool().Query(ctx, `
		SELECT event_id::text, event_type, created_at, sent_at, coalesce(split_part(traceparent, '-', 2), '')
		FROM outbox WHERE order_id = $1 ORDER BY id`, orderID)
	if err != nil {
		return ot, fmt.Errorf("read the outbox of order %s: %w", orderID, err)
	}
	if ot.Outbox, err = pgx.CollectRows(rows, pgx.RowToStructByPos[TracedOutbox]); err != nil {
		return ot, fmt.Errorf("read the outbox of order %s: %w", orderID, err)
	}
	return ot, nil
}

// TraceIDs are the order's distinct trace ids, in the order first seen.
func (ot OrderTrace) TraceIDs() []string {
	var ids []string
	add := func(id string) {
		if id != "" && !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	for _, e := range ot.Events {
		add(e.TraceID)
	}
	for _, o := range ot.Outbox {
		add(o.TraceID)
	}
	return ids
}

// XRayTraceID is a W3C trace id (32 hex digits) as the X-Ray console
// writes it: 1-<first 8>-<last 24>. X-Ray takes either form.
func XRayTraceID(w3c string) string {
	if len(w3c) != 32 || strings.Trim(strings.ToLower(w3c), "0123456789abcdef") != "" {
		return ""
	}
	return "1-" + w3c[:8] + "-" + w3c[8:]
}
