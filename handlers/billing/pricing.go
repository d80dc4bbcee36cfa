package billing

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
)

// maxPrice bounds a catalog price (one million dollars), which with the
// contract's limits on items and quantities keeps every sum and every percent
// computation far inside int64.
const maxPrice catalog.Cents = 100_000_000

// Line is one invoice line.
type Line struct {
	SKU       events.SKU
	Name      string
	UnitPrice catalog.Cents
	Quantity  int
	Total     catalog.Cents
}

// Quote is a priced order: its lines, subtotal, discount and total.
type Quote struct {
	Lines      []Line
	Subtotal   catalog.Cents
	Discount   catalog.Cents
	Total      catalog.Cents
	CouponCode string // the coupon applied, if any
	CouponNote string // why a requested coupon was not applied, if it was not
}

// PriceLines prices an order from catalog prices, one line per SKU in SKU
// order (an order listing a SKU twice gets one line). Prices in the event, if
// a shop sent any, are never read.
func PriceLines(o events.Order, products map[events.SKU]catalog.Product) ([]Line, catalog.Cents, error) {
	qty := o.Quantities()
	skus := make([]events.SKU, 0, len(qty))
	for sku := range qty {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	lines := make([]Line, 0, len(skus))
	var subtotal catalog.Cents
	for _, sku := range skus {
		p, ok := products[sku]
		if !ok {
			return nil, 0, events.UnknownSKU(sku)
		}
		if p.Price < 0 || p.Price > maxPrice {
			return nil, 0, fmt.Errorf("price of %s is %d cents, outside 0..%d", sku, p.Price, maxPrice)
		}
		total := p.Price * catalog.Cents(qty[sku])
		lines = append(lines, Line{SKU: sku, Name: p.Name, UnitPrice: p.Price, Quantity: qty[sku], Total: total})
		subtotal += total
	}
	return lines, subtotal, nil
}

// Reasons a requested coupon is not applied. The order is still invoiced, at
// full price, with the reason on the invoice: a customer's order is never
// refused for a coupon.
var (
	ErrCouponUnknown      = errors.New("coupon unknown")
	ErrCouponNotYetValid  = errors.New("coupon not yet valid")
	ErrCouponExpired      = errors.New("coupon expired")
	ErrCouponMinOrder     = errors.New("order below the coupon's minimum")
	ErrCouponLimitReached = errors.New("coupon redemption limit reached")
)

// Discount computes a coupon's discount on a subtotal at time at (the time
// the order was placed, so that a delayed message keeps its coupon).
//
// Rounding rule: a percent discount is subtotal × basis points / 10000,
// rounded half up to the cent (an exact half cent goes to the customer). A
// fixed discount is its amount. Either is capped at the subtotal, so a total
// is never negative. The redemption limit is not checked here: it is enforced
// atomically in the database when the coupon is redeemed.
func Discount(subtotal catalog.Cents, c catalog.Coupon, at time.Time) (catalog.Cents, error) {
	switch {
	case c.ValidFrom != nil && at.Before(*c.ValidFrom):
		return 0, ErrCouponNotYetValid
	case c.ValidUntil != nil && !at.Before(*c.ValidUntil):
		return 0, ErrCouponExpired
	case subtotal < c.MinOrder:
		return 0, fmt.Errorf("%w (%s < %s)", ErrCouponMinOrder, subtotal, c.MinOrder)
	}
	var d catalog.Cents
	switch c.Kind {
	case catalog.CouponPercent:
		d = (subtotal*catalog.Cents(c.PercentBP) + 5000) / 10000
	case catalog.CouponFixed:
		d = c.AmountOff
	default:
		return 0, fmt.Errorf("coupon %s has unknown kind %q", c.Code, c.Kind)
	}
	return min(max(d, 0), subtotal), nil
}
