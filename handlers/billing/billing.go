// Package billing prices orders from the catalog, applies coupons and issues
// invoices; it voids them when an order is cancelled.
package billing

import (
	"context"
	"errors"
	"fmt"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// Name is the handler's name in the processed-events ledger and in logs.
const Name = "billing"

// Invoice is what billing issues for an order.
type Invoice struct {
	Quote

	OrderID    string
	EventID    events.EventID
	CustomerID string
	Currency   string
}

// Issued is what Store.Invoice did.
type Issued struct {
	// New is false when the event was already handled: nothing changed.
	New bool
	// Number is the invoice's, or 0 when none was issued (the order was
	// invoiced already, or cancelled first).
	Number int64
	// Discount is what the invoice took off: the quote's, or 0 when the
	// coupon's redemption limit was reached.
	Discount catalog.Cents
}

// Store is what billing needs from the database. Each call that changes
// something is one transaction, recorded in the ledger with its event, so a
// copy of a handled event changes nothing; a known event_id with another
// payload is events.ErrConflict.
type Store interface {
	// Invoice records ev (order.placed) and issues inv with the next
	// gapless number, unless the order is already invoiced or billing saw
	// it cancelled first. A discount is applied only if the coupon's
	// redemption is counted within its limit, atomically; past the limit
	// the invoice is issued at full price with ErrCouponLimitReached as its
	// note.
	Invoice(ctx context.Context, ev events.Event, inv Invoice) (Issued, error)
	// Cancel records ev (order.cancelled) and voids the order's issued
	// invoice, giving its coupon redemption back; it reports whether it
	// voided one. A cancellation seen first means the order is never
	// invoiced.
	Cancel(ctx context.Context, ev events.Event, reason string) (voided bool, err error)
}

// Catalog returns products' names and prices (through the product cache);
// a SKU it does not know is missing from the map.
type Catalog interface {
	Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error)
}

// Handler is the billing handler.
type Handler struct {
	store   Store
	catalog Catalog
	coupons Coupons
}

// Coupons returns a coupon by code, or ok=false if there is none: the
// store, or a CouponCache in front of it.
type Coupons interface {
	Coupon(ctx context.Context, code string) (c catalog.Coupon, ok bool, err error)
}

// New returns a billing handler.
func New(store Store, cat Catalog, coupons Coupons) *Handler {
	return &Handler{store: store, catalog: cat, coupons: coupons}
}

// Handle implements handlers.EventFunc.
func (h *Handler) Handle(ctx context.Context, ev events.Event) error {
	switch ev.EventType {
	case events.OrderPlaced:
		return h.place(ctx, ev)
	case events.OrderCancelled:
		return h.cancel(ctx, ev)
	default:
		return nil // not billing's business (the subscription filters it anyway)
	}
}

func (h *Handler) place(ctx context.Context, ev events.Event) error {
	// Catalog data and the coupon are read before the order's transaction:
	// the transaction is one round trip, holding no connection while
	// anything else is read.
	products, err := h.products(ctx, ev.Order)
	if err != nil {
		return fmt.Errorf("bill order %s: %w", ev.Order.OrderID, err)
	}
	inv, err := h.quote(ctx, ev, products)
	if err != nil {
		return fmt.Errorf("bill order %s: %w", ev.Order.OrderID, err)
	}
	if _, err := h.store.Invoice(ctx, ev, inv); err != nil {
		return fmt.Errorf("bill order %s: %w", ev.Order.OrderID, err)
	}
	return nil
}

func (h *Handler) products(ctx context.Context, o events.Order) (map[events.SKU]catalog.Product, error) {
	skus := make([]events.SKU, 0, len(o.Items))
	for sku := range o.Quantities() {
		skus = append(skus, sku)
	}
	products, err := h.catalog.Products(ctx, skus)
	if err != nil {
		return nil, fmt.Errorf("read catalog: %w", err)
	}
	return products, nil
}

// quote prices the order from the catalog and works out its coupon's
// discount; the redemption itself (and its limit) is the store's, in the
// order's transaction.
func (h *Handler) quote(ctx context.Context, ev events.Event, products map[events.SKU]catalog.Product) (Invoice, error) {
	o := ev.Order
	lines, subtotal, err := PriceLines(o, products)
	if err != nil {
		return Invoice{}, err
	}
	q := Quote{Lines: lines, Subtotal: subtotal}
	if o.CouponCode != "" {
		q.Discount, q.CouponNote, err = h.discount(ctx, ev, subtotal)
		if err != nil {
			return Invoice{}, err
		}
		if q.Discount > 0 {
			q.CouponCode = o.CouponCode
		}
	}
	q.Total = q.Subtotal - q.Discount
	return Invoice{OrderID: o.OrderID, EventID: ev.EventID, CustomerID: o.Customer.ID, Currency: o.Currency, Quote: q}, nil
}

// discount is the order's coupon discount, or the note saying why the
// coupon does not apply (unknown, not yet valid, expired, below the
// minimum): a coupon never refuses an order.
func (h *Handler) discount(ctx context.Context, ev events.Event, subtotal catalog.Cents) (catalog.Cents, string, error) {
	c, ok, err := h.coupons.Coupon(ctx, ev.Order.CouponCode)
	if err != nil {
		return 0, "", fmt.Errorf("read coupon: %w", err)
	}
	if !ok {
		return 0, ErrCouponUnknown.Error(), nil
	}
	d, err := Discount(subtotal, c, ev.OccurredAt)
	for _, refusal := range []error{ErrCouponNotYetValid, ErrCouponExpired, ErrCouponMinOrder} {
		if errors.Is(err, refusal) {
			return 0, err.Error(), nil
		}
	}
	return d, "", err
}

func (h *Handler) cancel(ctx context.Context, ev events.Event) error {
	reason := ev.Reason
	if reason == "" {
		reason = "cancelled"
	}
	if _, err := h.store.Cancel(ctx, ev, reason); err != nil {
		return fmt.Errorf("void invoice of order %s: %w", ev.Order.OrderID, err)
	}
	return nil
}
