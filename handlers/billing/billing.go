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

// Tx is what billing needs from one database transaction. The store
// implements it; the handler owns the rules.
type Tx interface {
	// MarkProcessed records (billing, event) and reports whether this is the
	// first time; false means the event's effect is already committed.
	MarkProcessed(ctx context.Context, handler string, ev events.Event) (bool, error)
	// LockOrder serialises billing's transactions for one order until commit.
	LockOrder(ctx context.Context, handler, orderID string) error
	// Coupon returns the coupon, or ok=false if there is none with that code.
	Coupon(ctx context.Context, code string) (c catalog.Coupon, ok bool, err error)
	// RedeemCoupon counts one use of the coupon for the order, atomically
	// within its redemption limit; ok=false if the limit is reached.
	RedeemCoupon(ctx context.Context, code, orderID string) (ok bool, err error)
	// ReleaseCoupon gives back the order's redemption, if it had one.
	ReleaseCoupon(ctx context.Context, orderID string) error
	// OrderState says whether the order has an invoice and whether billing
	// has seen it cancelled.
	OrderState(ctx context.Context, orderID string) (invoiced, cancelled bool, err error)
	// CreateInvoice stores the invoice with the next gapless number.
	CreateInvoice(ctx context.Context, inv Invoice) (number int64, err error)
	// Cancel records the cancellation and voids the order's invoice if it has
	// an issued one; voided says whether it did.
	Cancel(ctx context.Context, ev events.Event, reason string) (voided bool, err error)
}

// Store runs fn in one transaction, committing if it returns nil.
type Store interface {
	BillingTx(ctx context.Context, fn func(Tx) error) error
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
}

// New returns a billing handler.
func New(store Store, cat Catalog) *Handler { return &Handler{store: store, catalog: cat} }

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
	// Catalog data is read before the transaction, never inside it: a
	// transaction waiting on a second connection for a cache miss could
	// exhaust the pool with every connection held by such a waiter.
	products, err := h.products(ctx, ev.Order)
	if err != nil {
		return fmt.Errorf("bill order %s: %w", ev.Order.OrderID, err)
	}
	err = h.store.BillingTx(ctx, func(tx Tx) error {
		first, err := tx.MarkProcessed(ctx, Name, ev)
		if err != nil || !first {
			return err
		}
		if err := tx.LockOrder(ctx, Name, ev.Order.OrderID); err != nil {
			return err
		}
		invoiced, cancelled, err := tx.OrderState(ctx, ev.Order.OrderID)
		if err != nil {
			return err
		}
		if invoiced || cancelled {
			// Another event already invoiced this order, or it was cancelled
			// before it was placed: nothing to issue.
			return nil
		}
		inv, err := h.quote(ctx, tx, ev, products)
		if err != nil {
			return err
		}
		_, err = tx.CreateInvoice(ctx, inv)
		return err
	})
	if err != nil {
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

// quote prices the order from the catalog and applies its coupon, redeeming it.
func (h *Handler) quote(ctx context.Context, tx Tx, ev events.Event, products map[events.SKU]catalog.Product) (Invoice, error) {
	o := ev.Order
	lines, subtotal, err := PriceLines(o, products)
	if err != nil {
		return Invoice{}, err
	}
	q := Quote{Lines: lines, Subtotal: subtotal}
	if o.CouponCode != "" {
		q.Discount, err = h.applyCoupon(ctx, tx, ev, subtotal)
		if reason := couponNote(err); reason != "" {
			q.CouponNote, err = reason, nil
		}
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

func (h *Handler) applyCoupon(ctx context.Context, tx Tx, ev events.Event, subtotal catalog.Cents) (catalog.Cents, error) {
	c, ok, err := tx.Coupon(ctx, ev.Order.CouponCode)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, ErrCouponUnknown
	}
	d, err := Discount(subtotal, c, ev.OccurredAt)
	if err != nil || d == 0 {
		return 0, err
	}
	redeemed, err := tx.RedeemCoupon(ctx, c.Code, ev.Order.OrderID)
	if err != nil {
		return 0, err
	}
	if !redeemed {
		return 0, ErrCouponLimitReached
	}
	return d, nil
}

// couponNote turns a coupon refusal into the note kept on the invoice; other
// errors (the database's) stay errors.
func couponNote(err error) string {
	for _, refusal := range []error{ErrCouponUnknown, ErrCouponNotYetValid, ErrCouponExpired, ErrCouponMinOrder, ErrCouponLimitReached} {
		if errors.Is(err, refusal) {
			return err.Error()
		}
	}
	return ""
}

func (h *Handler) cancel(ctx context.Context, ev events.Event) error {
	reason := ev.Reason
	if reason == "" {
		reason = "cancelled"
	}
	err := h.store.BillingTx(ctx, func(tx Tx) error {
		first, err := tx.MarkProcessed(ctx, Name, ev)
		if err != nil || !first {
			return err
		}
		if err := tx.LockOrder(ctx, Name, ev.Order.OrderID); err != nil {
			return err
		}
		voided, err := tx.Cancel(ctx, ev, reason)
		if err != nil || !voided {
			return err
		}
		return tx.ReleaseCoupon(ctx, ev.Order.OrderID)
	})
	if err != nil {
		return fmt.Errorf("void invoice of order %s: %w", ev.Order.OrderID, err)
	}
	return nil
}
