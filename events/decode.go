package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"github.com/google/uuid"
)

// Reason is a machine-readable cause for rejecting an event. It travels with
// a dead-lettered message so an operator can see at once what was wrong.
type Reason string

// Rejection reasons.
const (
	ReasonMalformedJSON      Reason = "malformed_json"
	ReasonTooLarge           Reason = "too_large"
	ReasonUnknownType        Reason = "unknown_event_type"
	ReasonUnsupportedVersion Reason = "unsupported_schema_version"
	ReasonMissingField       Reason = "missing_field"
	ReasonInvalidField       Reason = "invalid_field"
	ReasonUnknownSKU         Reason = "unknown_sku"
)

// ValidationError rejects an event that can never be processed.
type ValidationError struct {
	Reason Reason
	Field  string // JSON path of the offending field, if any
	Detail string
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid event: %s: %s", e.Reason, e.Detail)
	}
	return fmt.Sprintf("invalid event: %s: %s: %s", e.Reason, e.Field, e.Detail)
}

// ReasonOf returns the rejection reason carried by err, if any.
func ReasonOf(err error) (Reason, bool) {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Reason, true
	}
	return "", false
}

func invalid(reason Reason, field, format string, args ...any) *ValidationError {
	return &ValidationError{Reason: reason, Field: field, Detail: fmt.Sprintf(format, args...)}
}

// Decode parses and validates one encoded event. Every error it returns is a
// *ValidationError: a message that fails here will fail the same way forever.
// Unknown fields are accepted so that producers can add optional fields
// without a new schema version.
func Decode(body []byte) (Event, error) {
	if len(body) > MaxEventBytes {
		return Event{}, invalid(ReasonTooLarge, "", "%d bytes, limit %d", len(body), MaxEventBytes)
	}
	// First the envelope, so an unknown version is reported as such rather than
	// as whatever field a future version changed.
	var head struct {
		SchemaVersion *int `json:"schema_version"`
		EventType     Type `json:"event_type"`
	}
	if err := json.Unmarshal(body, &head); err != nil {
		return Event{}, invalid(ReasonMalformedJSON, "", "%v", err)
	}
	if head.SchemaVersion == nil {
		return Event{}, invalid(ReasonMissingField, "schema_version", "required")
	}
	if *head.SchemaVersion != SchemaVersion {
		return Event{}, invalid(ReasonUnsupportedVersion, "schema_version", "%d is not supported (want %d)", *head.SchemaVersion, SchemaVersion)
	}
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		return Event{}, invalid(ReasonMalformedJSON, "", "%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Event{}, invalid(ReasonMalformedJSON, "", "trailing data after the event")
	}
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// Validate checks an event against the contract. The publisher calls it too,
// so a bad event is refused before it reaches the topic.
func (ev *Event) Validate() error {
	if ev.EventID == "" {
		return invalid(ReasonMissingField, "event_id", "required")
	}
	if _, err := uuid.Parse(string(ev.EventID)); err != nil {
		return invalid(ReasonInvalidField, "event_id", "not a UUID")
	}
	if ev.EventType == "" {
		return invalid(ReasonMissingField, "event_type", "required")
	}
	if !ev.EventType.known() {
		return invalid(ReasonUnknownType, "event_type", "%q", truncate(string(ev.EventType), 40))
	}
	if ev.SchemaVersion != SchemaVersion {
		return invalid(ReasonUnsupportedVersion, "schema_version", "%d is not supported (want %d)", ev.SchemaVersion, SchemaVersion)
	}
	if ev.OccurredAt.IsZero() {
		return invalid(ReasonMissingField, "occurred_at", "required (RFC 3339)")
	}
	if len(ev.Reason) > maxReasonLen {
		return invalid(ReasonInvalidField, "reason", "longer than %d characters", maxReasonLen)
	}
	return ev.Order.validate(ev.EventType)
}

func (o *Order) validate(t Type) error {
	if err := requireText("order.order_id", o.OrderID, maxIDLen); err != nil {
		return err
	}
	if err := o.Customer.validate(); err != nil {
		return err
	}
	if o.Currency == "" {
		return invalid(ReasonMissingField, "order.currency", "required")
	}
	if o.Currency != supportedCurrency {
		return invalid(ReasonInvalidField, "order.currency", "%q is not supported (only %s)", truncate(o.Currency, 8), supportedCurrency)
	}
	if len(o.CouponCode) > maxCouponLen {
		return invalid(ReasonInvalidField, "order.coupon_code", "longer than %d characters", maxCouponLen)
	}
	if len(o.Items) == 0 && t == OrderPlaced {
		return invalid(ReasonMissingField, "order.items", "an order needs at least one item")
	}
	if len(o.Items) > MaxItems {
		return invalid(ReasonInvalidField, "order.items", "%d items, limit %d", len(o.Items), MaxItems)
	}
	for i, it := range o.Items {
		field := fmt.Sprintf("order.items[%d]", i)
		if err := requireText(field+".sku", string(it.SKU), maxIDLen); err != nil {
			return err
		}
		if it.Quantity < 1 || it.Quantity > MaxQuantity {
			return invalid(ReasonInvalidField, field+".quantity", "%d is outside 1..%d", it.Quantity, MaxQuantity)
		}
	}
	for sku, q := range o.Quantities() {
		if q > MaxQuantity {
			return invalid(ReasonInvalidField, "order.items", "SKU %s: total quantity %d exceeds %d", sku, q, MaxQuantity)
		}
	}
	return nil
}

func (c *Customer) validate() error {
	if err := requireText("order.customer.id", c.ID, maxIDLen); err != nil {
		return err
	}
	if err := requireText("order.customer.name", c.Name, maxNameLen); err != nil {
		return err
	}
	if err := requireText("order.customer.email", c.Email, maxNameLen); err != nil {
		return err
	}
	addr, err := mail.ParseAddress(c.Email)
	if err != nil || addr.Address != c.Email {
		return invalid(ReasonInvalidField, "order.customer.email", "not a plain email address")
	}
	return nil
}

func requireText(field, v string, maxLen int) error {
	switch {
	case strings.TrimSpace(v) == "":
		return invalid(ReasonMissingField, field, "required")
	case len(v) > maxLen:
		return invalid(ReasonInvalidField, field, "longer than %d characters", maxLen)
	case strings.ContainsAny(v, "\r\n\x00"):
		return invalid(ReasonInvalidField, field, "contains control characters")
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// Encode returns the JSON form of a valid event.
func Encode(ev Event) ([]byte, error) {
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("encode event %s: %w", ev.EventID, err)
	}
	if len(b) > MaxEventBytes {
		return nil, fmt.Errorf("encode event %s: %w", ev.EventID, invalid(ReasonTooLarge, "", "%d bytes, limit %d", len(b), MaxEventBytes))
	}
	return b, nil
}
