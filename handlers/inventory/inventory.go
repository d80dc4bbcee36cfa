// Package inventory reserves stock for placed orders, all items or none, and
// puts it back when an order is cancelled. Stock never goes negative.
package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// Name is the handler's name in the processed-events ledger and in logs.
const Name = "inventory"

// Status is a reservation's state.
type Status string

// Reservation states.
const (
	StatusReserved  Status = "reserved"  // stock taken for every item
	StatusRejected  Status = "rejected"  // not enough stock: nothing taken
	StatusReleased  Status = "released"  // reserved, then put back on cancellation
	StatusCancelled Status = "cancelled" // cancelled before it was placed: nothing to take
)

// Line is a quantity of one SKU.
type Line struct {
	SKU      events.SKU
	Quantity int
}

// Store is what inventory needs from the database. Each call is one
// transaction, recorded in the ledger with its event, so a copy of a handled
// event changes nothing; a known event_id with another payload is
// events.ErrConflict.
type Store interface {
	// Reserve records ev (order.placed) and, unless the order is already
	// decided or was cancelled first, takes every line from stock or none:
	// product rows are locked in SKU order, so concurrent orders cannot
	// deadlock, and stock never goes below zero. An order stock cannot
	// cover is recorded rejected, with the shortfall, and compensation (its
	// cancellation) is written to the outbox in the same transaction. It
	// returns the reservation's status, or "" if ev changed nothing.
	Reserve(ctx context.Context, ev events.Event, lines []Line, compensation events.Event) (Status, error)
	// Release records ev (order.cancelled) and puts back exactly what the
	// order reserved; an order cancelled before it was placed is recorded
	// cancelled, so the placement takes nothing.
	Release(ctx context.Context, ev events.Event) error
}

// Catalog returns catalog data (through the product cache); a SKU it does
// not know is missing from the map.
type Catalog interface {
	Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error)
}

// Handler is the inventory handler.
type Handler struct {
	store   Store
	catalog Catalog
}

// New returns an inventory handler.
func New(store Store, cat Catalog) *Handler { return &Handler{store: store, catalog: cat} }

// Handle implements handlers.EventFunc.
func (h *Handler) Handle(ctx context.Context, ev events.Event) error {
	var err error
	switch ev.EventType {
	case events.OrderPlaced:
		// Unknown SKUs are refused from the (cached) catalog before any
		// stock row is locked.
		if err = h.checkCatalog(ctx, ev.Order); err == nil {
			_, err = h.store.Reserve(ctx, ev, Lines(ev.Order), OutOfStock(ev))
		}
	case events.OrderCancelled:
		err = h.store.Release(ctx, ev)
	default:
		return nil
	}
	if err != nil {
		return fmt.Errorf("inventory %s for order %s: %w", ev.EventType, ev.Order.OrderID, err)
	}
	return nil
}

func (h *Handler) checkCatalog(ctx context.Context, o events.Order) error {
	lines := Lines(o)
	skus := make([]events.SKU, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	products, err := h.catalog.Products(ctx, skus)
	if err != nil {
		return fmt.Errorf("read catalog: %w", err)
	}
	for _, sku := range skus {
		if _, ok := products[sku]; !ok {
			return events.UnknownSKU(sku)
		}
	}
	return nil
}

// ReasonOutOfStock is the reason of the cancellation inventory emits.
const ReasonOutOfStock = "out_of_stock"

// OutOfStock is the order.cancelled event for a placed order stock cannot
// cover. Its event_id is derived from the placed event's, so emitting it
// again (a redelivered rejection) names the same event.
func OutOfStock(placed events.Event) events.Event {
	ev := placed
	ev.EventID = events.EventID(uuid.NewSHA1(uuid.NameSpaceOID, []byte("orderpipe:out_of_stock:"+string(placed.EventID))).String())
	ev.EventType = events.OrderCancelled
	ev.Reason = ReasonOutOfStock
	ev.OccurredAt = placed.OccurredAt
	return ev
}

// Lines merges an order's items into one line per SKU, in SKU order: the
// order in which rows are locked.
func Lines(o events.Order) []Line {
	q := o.Quantities()
	lines := make([]Line, 0, len(q))
	for sku, n := range q {
		lines = append(lines, Line{SKU: sku, Quantity: n})
	}
	slices.SortFunc(lines, func(a, b Line) int { return strings.Compare(string(a.SKU), string(b.SKU)) })
	return lines
}
