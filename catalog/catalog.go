// Package catalog holds the domain values the handlers share: money, products
// and coupons. Money is always integer cents.
package catalog

import (
	"fmt"
	"time"

	"github.com/orderpipe/orderpipe/events"
)

// Cents is an amount of money in minor units (US cents). Never a float.
type Cents int64

// String formats the amount as dollars and cents, e.g. "$12.34".
func (c Cents) String() string {
	sign := ""
	if c < 0 {
		sign, c = "-", -c
	}
	return fmt.Sprintf("%s$%d.%02d", sign, c/100, c%100)
}

// Product is a catalog entry.
type Product struct {
	SKU   events.SKU
	Name  string
	Price Cents
	Stock int
}

// CouponKind says how a coupon discounts.
type CouponKind string

// Coupon kinds.
const (
	CouponPercent CouponKind = "percent" // PercentBP basis points off the subtotal
	CouponFixed   CouponKind = "fixed"   // AmountOff off the subtotal
)

// Coupon is a discount code.
type Coupon struct {
	Code           string
	Kind           CouponKind
	PercentBP      int64 // basis points, 1..10000 (1000 = 10 %)
	AmountOff      Cents
	MinOrder       Cents      // the subtotal must reach this
	ValidFrom      *time.Time // nil: no lower bound
	ValidUntil     *time.Time // nil: no upper bound (exclusive)
	MaxRedemptions *int       // nil: unlimited
	Redemptions    int
}
