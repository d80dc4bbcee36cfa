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

// Tx is what inventory needs from one database transaction.
type Tx interface {
	MarkProcessed(ctx context.Context, handler string, ev events.Event) (bool, error)
	LockOrder(ctx context.Context, handler, orderID string) error
	// Reservation returns the order's reservation status, or ok=false.
	Reservation(ctx context.Context, orderID string) (s Status, ok bool, err error)
	// LockStock locks the SKUs' product rows in SKU order (so concurrent
	// orders cannot deadlock) and returns their stock. A SKU the catalog
	// lacks is events.UnknownSKU.
	LockStock(ctx context.Context, skus []events.SKU) (map[events.SKU]int, error)
	// Reserve takes the lines from stock and records the reservation.
	Reserve(ctx context.Context, ev events.Event, lines []Line) error
	// Reject records a reservation refused for reason, taking nothing.
	Reject(ctx context.Context, ev events.Event, reason string) error
	// Emit writes an event to the outbox, to be published after commit.
	Emit(ctx context.Context, ev events.Event) error
	// Release puts back what the order reserved and marks it released.
	Release(ctx context.Context, ev events.Event) error
	// MarkCancelled records an order cancelled before it was placed.
	MarkCancelled(ctx context.Context, ev events.Event) error
}

// Store runs fn in one transaction, committing if it returns nil.
type Store interface {
	InventoryTx(ctx context.Context, fn func(Tx) error) error
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
		// stock row is locked; the lock itself re-checks.
		if err = h.checkCatalog(ctx, ev.Order); err == nil {
			err = h.inTx(ctx, ev, h.reserve)
		}
	case events.OrderCancelled:
		err = h.inTx(ctx, ev, h.release)
	default:
		return nil
	}
	return err
}

func (h *Handler) checkCatalog(ctx context.Context, o events.Order) error {
	lines := Lines(o)
	skus := make([]events.SKU, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	products, err := h.catalog.Products(ctx, skus)
	if err != nil {
		return fmt.Errorf("inventory: read catalog for order %s: %w", o.OrderID, err)
	}
	for _, sku := range skus {
		if _, ok := products[sku]; !ok {
			return fmt.Errorf("inventory: order %s: %w", o.OrderID, events.UnknownSKU(sku))
		}
	}
	return nil
}

// inTx runs step once per event: under the ledger marker and the order's lock.
func (h *Handler) inTx(ctx context.Context, ev events.Event, step func(context.Context, Tx, events.Event) error) error {
	err := h.store.InventoryTx(ctx, func(tx Tx) error {
		first, err := tx.MarkProcessed(ctx, Name, ev)
		if err != nil || !first {
			return err
		}
		if err := tx.LockOrder(ctx, Name, ev.Order.OrderID); err != nil {
			return err
		}
		return step(ctx, tx, ev)
	})
	if err != nil {
		return fmt.Errorf("inventory %s for order %s: %w", ev.EventType, ev.Order.OrderID, err)
	}
	return nil
}

func (h *Handler) reserve(ctx context.Context, tx Tx, ev events.Event) error {
	if _, ok, err := tx.Reservation(ctx, ev.Order.OrderID); err != nil || ok {
		return err // already decided (or cancelled first): nothing more to take
	}
	lines := Lines(ev.Order)
	skus := make([]events.SKU, len(lines))
	for i, l := range lines {
		skus[i] = l.SKU
	}
	stock, err := tx.LockStock(ctx, skus)
	if err != nil {
		return err
	}
	if short := Shortfall(lines, stock); short != "" {
		if err := tx.Reject(ctx, ev, "insufficient_stock: "+short); err != nil {
			return err
		}
		// The order cannot be fulfilled: cancel it through the pipeline, so
		// billing voids its invoice and the customer hears why. Same
		// transaction as the rejection: both happen, or neither.
		return tx.Emit(ctx, OutOfStock(ev))
	}
	return tx.Reserve(ctx, ev, lines)
}

func (h *Handler) release(ctx context.Context, tx Tx, ev events.Event) error {
	s, ok, err := tx.Reservation(ctx, ev.Order.OrderID)
	switch {
	case err != nil:
		return err
	case !ok:
		return tx.MarkCancelled(ctx, ev)
	case s == StatusReserved:
		return tx.Release(ctx, ev)
	default:
		return nil // rejected, released or cancelled: no stock is held
	}
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

// Shortfall describes the lines stock cannot cover, or returns "" if it
// covers them all.
func Shortfall(lines []Line, stock map[events.SKU]int) string {
	var short []string
	for _, l := range lines {
		if have := stock[l.SKU]; have < l.Quantity {
			short = append(short, fmt.Sprintf("%s (want %d, have %d)", l.SKU, l.Quantity, have))
		}
	}
	return strings.Join(short, ", ")
}
