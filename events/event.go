// Package events is the order-event contract shared by the publisher and the
// worker: the JSON shape, its validation, and the SNS publisher.
//
// One shape serves every event type. Money never travels in an event: prices
// come from the catalog, so a shop cannot set its own price.
package events

import (
	"slices"
	"time"
)

// SchemaVersion is the only version of the contract this code understands.
const SchemaVersion = 1

// MaxEventBytes bounds an encoded event. SNS and SQS allow 256 KiB; an order
// that large is a bug or an attack, so the contract stops well below.
const MaxEventBytes = 64 << 10

// Limits on an order's shape. They keep every amount far from int64 overflow.
const (
	MaxItems          = 100
	MaxQuantity       = 1000
	maxIDLen          = 64
	maxNameLen        = 200
	maxCouponLen      = 64
	supportedCurrency = "USD"
)

// The reasons an order.cancelled event may carry. Nothing else is accepted:
// the reason is worded into the customer's email, so it cannot be free text.
const (
	CancelCustomerRequest = "customer_request"
	CancelOutOfStock      = "out_of_stock"
)

// Type is an event's type; it is also an SNS message attribute so that
// subscriptions can filter on it.
type Type string

// The event types of schema version 1.
const (
	OrderPlaced    Type = "order.placed"
	OrderCancelled Type = "order.cancelled"
	OrderShipped   Type = "order.shipped"
)

// Types lists every known event type.
var Types = []Type{OrderPlaced, OrderCancelled, OrderShipped}

func (t Type) known() bool {
	return slices.Contains(Types, t)
}

// Attribute names the publisher sets on every SNS message.
const (
	AttrEventType     = "event_type"
	AttrSchemaVersion = "schema_version"
)

// EventID is the idempotency key of an event, a UUID set by the publisher in
// its canonical form (lowercase 8-4-4-4-12 hex). Only that form is accepted:
// the Redis key uses the text and the ledger the parsed UUID, so two
// spellings of one UUID would be one event to one layer and two to the other.
type EventID string

// SKU identifies a product in the catalog.
type SKU string

// Event is one order event.
type Event struct {
	EventID       EventID   `json:"event_id"`
	EventType     Type      `json:"event_type"`
	SchemaVersion int       `json:"schema_version"`
	OccurredAt    time.Time `json:"occurred_at"`
	// Reason says why, for order.cancelled: CancelCustomerRequest,
	// CancelOutOfStock or empty.
	Reason string `json:"reason,omitempty"`
	Order  Order  `json:"order"`
}

// Order is the order an event is about.
type Order struct {
	OrderID    string   `json:"order_id"`
	Customer   Customer `json:"customer"`
	Currency   string   `json:"currency"`
	Items      []Item   `json:"items"`
	CouponCode string   `json:"coupon_code,omitempty"`
}

// Customer is who placed the order.
type Customer struct {
	ID    string `json:"id"`
	Email string `json:"email"`
	Name  string `json:"name"`
}

// Item is one line of an order: a SKU and how many.
type Item struct {
	SKU      SKU `json:"sku"`
	Quantity int `json:"quantity"`
}

// Quantities sums the items per SKU, so that an order listing a SKU twice
// reserves and bills it as one line.
func (o Order) Quantities() map[SKU]int {
	q := make(map[SKU]int, len(o.Items))
	for _, it := range o.Items {
		q[it.SKU] += it.Quantity
	}
	return q
}
