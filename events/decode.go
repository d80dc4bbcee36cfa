package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
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
	// ReasonConflict: the event_id was seen with another payload (ErrConflict).
	ReasonConflict Reason = "idempotency_conflict"
)

// ValidationError rejects an event that can never be processed.
type ValidationError struct {
	Reason Reason
	Field  string // JSON path of the offending field, if any
	Detail string
}

// PermanentReason says that no retry can mend an invalid event, and why:
// the error classification (resilience.Classify) reads it.
func (e *ValidationError) PermanentReason() string { return string(e.Reason) }

// UnknownSKU rejects an event naming a SKU the catalog does not have: the
// one shape of that error, whichever handler finds it.
func UnknownSKU(sku SKU) *ValidationError {
	return &ValidationError{Reason: ReasonUnknownSKU, Field: "order.items", Detail: fmt.Sprintf("SKU %q is not in the catalog", sku)}
}

func (e *ValidationError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("invalid event: %s: %s", e.Reason, e.Detail)
	}
	return fmt.Sprintf("invalid event: %s: %s: %s", e.Reason, e.Field, e.Detail)
}

// ReasonOf returns the rejection reason carried by err, if any.
func ReasonOf(err error) (Reason, bool) {
	if ve, ok := errors.AsType[*ValidationError](err); ok {
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
	// The common case, a current event, is parsed once; anything else is
	// parsed again below, so that its error is the one the envelope gives.
	if ev, err := decodeCurrent(body); err == nil {
		return validated(ev)
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
	ev, err := decodeCurrent(body)
	if err != nil {
		return Event{}, err
	}
	return validated(ev)
}

func validated(ev Event) (Event, error) {
	if err := ev.Validate(); err != nil {
		return Event{}, err
	}
	return ev, nil
}

// decodeCurrent parses body as an event of the current schema version, with
// nothing after it; it does not validate the fields.
func decodeCurrent(body []byte) (Event, error) {
	var ev Event
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&ev); err != nil {
		return Event{}, invalid(ReasonMalformedJSON, "", "%v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return Event{}, invalid(ReasonMalformedJSON, "", "trailing data after the event")
	}
	if ev.SchemaVersion != SchemaVersion {
		return Event{}, invalid(ReasonUnsupportedVersion, "schema_version", "%d is not supported (want %d)", ev.SchemaVersion, SchemaVersion)
	}
	return ev, nil
}

// Validate checks an event against the contract. The publisher calls it too,
// so a bad event is refused before it reaches the topic.
func (ev *Event) Validate() error {
	if ev.EventID == "" {
		return invalid(ReasonMissingField, "event_id", "required")
	}
	if !canonicalUUID(string(ev.EventID)) {
		return invalid(ReasonInvalidField, "event_id", "not a UUID in canonical form (lowercase 8-4-4-4-12 hex)")
	}
	if ev.EventType == "" {
		return invalid(ReasonMissingField, "event_type", "required")
	}
	if !ev.EventType.known() {
		return invalid(ReasonUnknownType, "event_type", "%s", quote(string(ev.EventType), 40))
	}
	if ev.SchemaVersion != SchemaVersion {
		return invalid(ReasonUnsupportedVersion, "schema_version", "%d is not supported (want %d)", ev.SchemaVersion, SchemaVersion)
	}
	if ev.OccurredAt.IsZero() {
		return invalid(ReasonMissingField, "occurred_at", "required (RFC 3339)")
	}
	switch ev.Reason {
	case "", CancelCustomerRequest, CancelOutOfStock:
	default:
		return invalid(ReasonInvalidField, "reason", "%s is not one of %s, %s", quote(ev.Reason, 40), CancelCustomerRequest, CancelOutOfStock)
	}
	return ev.Order.validate(ev.EventType)
}

func (o Order) validate(t Type) error {
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
		return invalid(ReasonInvalidField, "order.currency", "%s is not supported (only %s)", quote(o.Currency, 8), supportedCurrency)
	}
	if len(o.CouponCode) > maxCouponLen {
		return invalid(ReasonInvalidField, "order.coupon_code", "longer than %d characters", maxCouponLen)
	}
	if err := noControl("order.coupon_code", o.CouponCode); err != nil {
		return err
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
	}
	return noControl(field, v)
}

// noControl refuses control characters: C0 (including TAB, CR, LF and ESC),
// DEL and C1. Names and ids reach operators' terminals (`orderctl dlq list`)
// and customers' emails, where such a character can move the cursor, rewrite
// what is shown or inject a header. Invalid UTF-8 is left to JSON, which
// turns it into U+FFFD both ways (Decode, and Encode at the publisher).
func noControl(field, v string) error {
	for i, r := range v {
		if unicode.IsControl(r) {
			return invalid(ReasonInvalidField, field, "control character U+%04X at byte %d", r, i)
		}
	}
	return nil
}

// canonicalUUID reports whether s is a UUID in its canonical text form,
// xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx in lowercase hex: the form
// uuid.UUID.String gives. uuid.Parse also accepts upper case, braces, a
// urn:uuid: prefix and no dashes.
func canonicalUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := range len(s) {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
				return false
			}
		}
	}
	return true
}

// quote is a value for an error message: truncated to n bytes and quoted
// with Go escapes, so no control character of it reaches a log or terminal.
func quote(s string, n int) string {
	if len(s) <= n {
		return strconv.Quote(s)
	}
	return strconv.Quote(strings.ToValidUTF8(s[:n], "")) + "…"
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
