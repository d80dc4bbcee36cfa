package store

import (
	"context"
	"fmt"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/inventory"
)

// Inventory is the database side of the inventory handler
// (inventory.Store). Its outbox rows are for outboxTopic (the topic's name):
// the relay of that topic publishes them.
type Inventory struct {
	db          *DB
	outboxTopic string
}

// NewInventory returns inventory's adapter on db, emitting to outboxTopic.
func NewInventory(db *DB, outboxTopic string) *Inventory {
	return &Inventory{db: db, outboxTopic: outboxTopic}
}

// reserveCall is orderpipe_reserve's (see the migration): after the
// ledger's six, the lines' SKUs (in SKU order) and quantities, the
// rejection reason's prefix, the compensation's event id, type and body,
// the outbox topic, and the trace context the compensation's publish
// continues. The product rows are locked in SKU order before the effect
// decides; all lines are taken or none, and a rejection writes the
// compensation to the outbox in the same transaction.
const reserveCall = `SELECT r_first, r_known, r_status FROM orderpipe_reserve($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::text[], $8::int[], $9::text, $10::text, $11::text, $12::text, $13::text, $14::text, $15::text)`

// Reserve implements inventory.Store, in one round trip (see once).
func (s *Inventory) Reserve(ctx context.Context, ev events.Event, lines []inventory.Line, compensation events.Event) (inventory.Status, error) {
	if s.outboxTopic == "" {
		return "", fmt.Errorf("reserve stock for order %s: %w", ev.Order.OrderID, ErrNoOutboxTopic)
	}
	body, err := events.Encode(compensation)
	if err != nil {
		return "", fmt.Errorf("reserve stock for order %s: compensation: %w", ev.Order.OrderID, err)
	}
	skus, qtys := make([]string, len(lines)), make([]int32, len(lines))
	for i, l := range lines {
		skus[i], qtys[i] = string(l.SKU), int32(l.Quantity) //nolint:gosec // G115: events.Decode bounds a SKU's quantity to MaxQuantity (1000)
	}
	parent, state := traceContext(ctx)
	args := append(ledgerArgs(ctx, inventory.Name, ev), skus, qtys, "insufficient_stock: ",
		string(compensation.EventID), string(compensation.EventType), string(body), s.outboxTopic, parent, state)
	var status inventory.Status
	_, err = s.db.once(ctx, inventory.Name, ev, reserveCall, args, &status)
	if err != nil {
		return "", fmt.Errorf("reserve stock for order %s: %w", ev.Order.OrderID, err)
	}
	return status, nil
}

// releaseCall is orderpipe_release's: after the ledger's six, the reason.
// A reserved order gets back exactly what its movements took; an order
// cancelled before it was placed is recorded so its placement takes
// nothing.
const releaseCall = `SELECT r_first, r_known FROM orderpipe_release($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text, $7::text)`

// Release implements inventory.Store, in one round trip (see once).
func (s *Inventory) Release(ctx context.Context, ev events.Event) error {
	_, err := s.db.once(ctx, inventory.Name, ev, releaseCall, append(ledgerArgs(ctx, inventory.Name, ev), ev.Reason))
	if err != nil {
		return fmt.Errorf("release stock of order %s: %w", ev.Order.OrderID, err)
	}
	return nil
}
