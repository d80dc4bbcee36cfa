package events

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const validPlaced = `{"event_id":"6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10","event_type":"order.placed","schema_version":1,
 "occurred_at":"2026-11-24T10:00:00Z",
 "order":{"order_id":"ord-1","customer":{"id":"cus-1","email":"ada@example.com","name":"Ada"},
          "currency":"USD","items":[{"sku":"MUG-CLASSIC","quantity":2}],"coupon_code":"SAVE10"}}`

// edit returns validPlaced with fn applied to its decoded JSON map.
func edit(t testing.TB, fn func(m map[string]any)) string {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(validPlaced), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// order, customer and item0 reach into validPlaced's decoded JSON, whose
// shape is fixed: a nil map from a wrong path fails the edit at once.
func order(m map[string]any) map[string]any { o, _ := m["order"].(map[string]any); return o }
func customer(m map[string]any) map[string]any {
	c, _ := order(m)["customer"].(map[string]any)
	return c
}
func item0(m map[string]any) map[string]any {
	items, _ := order(m)["items"].([]any)
	it, _ := items[0].(map[string]any)
	return it
}

func TestDecodeValidEvents(t *testing.T) {
	want := Event{
		EventID: "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", EventType: OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		Order: Order{OrderID: "ord-1", Customer: Customer{ID: "cus-1", Email: "ada@example.com", Name: "Ada"},
			Currency: "USD", Items: []Item{{SKU: "MUG-CLASSIC", Quantity: 2}}, CouponCode: "SAVE10"},
	}
	cancelled := want
	cancelled.EventType, cancelled.Reason = OrderCancelled, "customer_request"
	shipped := want
	shipped.EventType, shipped.Order.Items = OrderShipped, nil
	outOfStock := want
	outOfStock.EventType, outOfStock.Reason = OrderCancelled, "out_of_stock"
	cancelledNoReason := want
	cancelledNoReason.EventType = OrderCancelled
	accented := want
	accented.Order.Customer.Name = "Zoë Łódź 李"
	tests := []struct {
		name string
		body string
		want Event
	}{
		{"placed", validPlaced, want},
		{"cancelled with a reason", edit(t, func(m map[string]any) { m["event_type"] = "order.cancelled"; m["reason"] = "customer_request" }), cancelled},
		{"shipped needs no items", edit(t, func(m map[string]any) { m["event_type"] = "order.shipped"; delete(order(m), "items") }), shipped},
		{"unknown fields are accepted (producers may add optional ones)", edit(t, func(m map[string]any) { m["channel"] = "web" }), want},
		{"cancelled out of stock", edit(t, func(m map[string]any) { m["event_type"] = "order.cancelled"; m["reason"] = "out_of_stock" }), outOfStock},
		{"cancelled without a reason", edit(t, func(m map[string]any) { m["event_type"] = "order.cancelled" }), cancelledNoReason},
		{"letters beyond ASCII are not control characters", edit(t, func(m map[string]any) { customer(m)["name"] = "Zoë Łódź 李" }), accented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Decode([]byte(tt.body))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("decoded event (-want +got):\n%s", d)
			}
		})
	}
}

// rejectCase is an event body Decode must refuse, and how.
type rejectCase struct {
	name   string
	body   string
	reason Reason
	field  string
}

func TestDecodeRejectsWithAReason(t *testing.T) {
	tests := []rejectCase{
		{"not JSON", `{"event_id":`, ReasonMalformedJSON, ""},
		{"an array", `[1,2]`, ReasonMalformedJSON, ""},
		{"trailing data", validPlaced + `{}`, ReasonMalformedJSON, ""},
		{"too large", `{"pad":"` + strings.Repeat("x", MaxEventBytes) + `"}`, ReasonTooLarge, ""},
		{"no schema_version", edit(t, func(m map[string]any) { delete(m, "schema_version") }), ReasonMissingField, "schema_version"},
		{"schema_version 2", edit(t, func(m map[string]any) { m["schema_version"] = 2 }), ReasonUnsupportedVersion, "schema_version"},
		{"unknown event type", edit(t, func(m map[string]any) { m["event_type"] = "order.refunded" }), ReasonUnknownType, "event_type"},
		{"no event type", edit(t, func(m map[string]any) { delete(m, "event_type") }), ReasonMissingField, "event_type"},
		{"no event_id", edit(t, func(m map[string]any) { delete(m, "event_id") }), ReasonMissingField, "event_id"},
		{"event_id not a UUID", edit(t, func(m map[string]any) { m["event_id"] = "42" }), ReasonInvalidField, "event_id"},
		{"no occurred_at", edit(t, func(m map[string]any) { delete(m, "occurred_at") }), ReasonMissingField, "occurred_at"},
		{"occurred_at not RFC 3339", edit(t, func(m map[string]any) { m["occurred_at"] = "yesterday" }), ReasonMalformedJSON, ""},
		{"no order", edit(t, func(m map[string]any) { delete(m, "order") }), ReasonMissingField, "order.order_id"},
		{"no customer email", edit(t, func(m map[string]any) { delete(customer(m), "email") }), ReasonMissingField, "order.customer.email"},
		{"email with a display name", edit(t, func(m map[string]any) { customer(m)["email"] = "Ada <ada@example.com>" }), ReasonInvalidField, "order.customer.email"},
		{"control characters in a name", edit(t, func(m map[string]any) { customer(m)["name"] = "Ada\r\nBcc: x@y" }), ReasonInvalidField, "order.customer.name"},
		{"no currency", edit(t, func(m map[string]any) { delete(order(m), "currency") }), ReasonMissingField, "order.currency"},
		{"EUR", edit(t, func(m map[string]any) { order(m)["currency"] = "EUR" }), ReasonInvalidField, "order.currency"},
		{"no items on a placed order", edit(t, func(m map[string]any) { order(m)["items"] = []any{} }), ReasonMissingField, "order.items"},
		{"quantity 0", edit(t, func(m map[string]any) { item0(m)["quantity"] = 0 }), ReasonInvalidField, "order.items[0].quantity"},
		{"negative quantity", edit(t, func(m map[string]any) { item0(m)["quantity"] = -3 }), ReasonInvalidField, "order.items[0].quantity"},
		{"quantity over the limit", edit(t, func(m map[string]any) { item0(m)["quantity"] = MaxQuantity + 1 }), ReasonInvalidField, "order.items[0].quantity"},
		{"one SKU twice over the limit", edit(t, func(m map[string]any) {
			order(m)["items"] = []any{map[string]any{"sku": "A", "quantity": 600}, map[string]any{"sku": "A", "quantity": 600}}
		}), ReasonInvalidField, "order.items"},
		{"no SKU", edit(t, func(m map[string]any) { delete(item0(m), "sku") }), ReasonMissingField, "order.items[0].sku"},
		{"quantity a string", edit(t, func(m map[string]any) { item0(m)["quantity"] = "2" }), ReasonMalformedJSON, ""},
		{"cancellation reason in free text", edit(t, func(m map[string]any) {
			m["event_type"] = "order.cancelled"
			m["reason"] = `<a href="https://evil.example">claim your refund</a>`
		}), ReasonInvalidField, "reason"},
		{"cancellation reason in another case", edit(t, func(m map[string]any) { m["event_type"] = "order.cancelled"; m["reason"] = "Customer_Request" }), ReasonInvalidField, "reason"},
		{"cancellation reason with padding", edit(t, func(m map[string]any) { m["event_type"] = "order.cancelled"; m["reason"] = "out_of_stock " }), ReasonInvalidField, "reason"},
		{"event_id as a URN", edit(t, func(m map[string]any) { m["event_id"] = "urn:uuid:6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10" }), ReasonInvalidField, "event_id"},
		{"event_id in braces", edit(t, func(m map[string]any) { m["event_id"] = "{6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10}" }), ReasonInvalidField, "event_id"},
		{"event_id in upper case", edit(t, func(m map[string]any) { m["event_id"] = "6F1C2B1E-4A8E-4A47-9A55-0D0B8F1F2A10" }), ReasonInvalidField, "event_id"},
		{"event_id without dashes", edit(t, func(m map[string]any) { m["event_id"] = "6f1c2b1e4a8e4a479a550d0b8f1f2a10" }), ReasonInvalidField, "event_id"},
		{"event_id with dashes misplaced", edit(t, func(m map[string]any) { m["event_id"] = "6f1c2b1e4-a8e-4a47-9a55-0d0b8f1f2a10" }), ReasonInvalidField, "event_id"},
	}
	tests = append(tests, controlCharacterCases(t)...)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(tt.body))
			var ve *ValidationError
			if !errors.As(err, &ve) {
				t.Fatalf("err = %v, want a *ValidationError", err)
			}
			if ve.Reason != tt.reason || ve.Field != tt.field {
				t.Errorf("rejected as (%s, %q), want (%s, %q): %v", ve.Reason, ve.Field, tt.reason, tt.field, err)
			}
		})
	}
}

// controlCharacterCases puts C0 (ESC, TAB, SOH), DEL and C1 (CSI, NEL)
// characters into every free-text field of the event: each is refused as
// invalid_field, naming the field, because these fields reach operators'
// terminals (orderctl dlq list) and customers' emails.
func controlCharacterCases(t *testing.T) []rejectCase {
	t.Helper()
	fields := []struct {
		field string
		set   func(m map[string]any, v string)
	}{
		{"order.order_id", func(m map[string]any, v string) { order(m)["order_id"] = "ord-" + v + "1" }},
		{"order.customer.id", func(m map[string]any, v string) { customer(m)["id"] = "cus-" + v + "1" }},
		{"order.customer.name", func(m map[string]any, v string) { customer(m)["name"] = "Ada" + v + "[2J" }},
		{"order.customer.email", func(m map[string]any, v string) { customer(m)["email"] = "ada" + v + "@example.com" }},
		{"order.items[0].sku", func(m map[string]any, v string) { item0(m)["sku"] = "MUG" + v + "[31m" }},
		{"order.coupon_code", func(m map[string]any, v string) { order(m)["coupon_code"] = "SAVE" + v + "10" }},
	}
	chars := []struct{ name, char string }{
		{"ESC", "\x1b"}, {"TAB", "\t"}, {"SOH", "\x01"}, {"DEL", "\x7f"}, {"C1 CSI", "\u009b"}, {"C1 NEL", "\u0085"},
	}
	var out []rejectCase
	for _, f := range fields {
		for _, c := range chars {
			body := edit(t, func(m map[string]any) { f.set(m, c.char) })
			out = append(out, rejectCase{c.name + " in " + f.field, body, ReasonInvalidField, f.field})
		}
	}
	return out
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ev, err := Decode([]byte(validPlaced))
	if err != nil {
		t.Fatal(err)
	}
	b, err := Encode(ev)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(ev, again); d != "" {
		t.Errorf("round trip changed the event (-before +after):\n%s", d)
	}
	if Fingerprint(ev) != Fingerprint(again) {
		t.Error("round trip changed the fingerprint")
	}
	reordered := edit(t, func(m map[string]any) { m["occurred_at"] = "2026-11-24T11:00:00+01:00" })
	other, err := Decode([]byte(reordered))
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(other) != Fingerprint(ev) {
		t.Error("the same instant in another time zone changed the fingerprint")
	}
	other.Order.Items[0].Quantity = 3
	if Fingerprint(other) == Fingerprint(ev) {
		t.Error("a different quantity kept the fingerprint")
	}
}

// FuzzDecode: whatever the bytes, Decode does not panic; a rejection always
// carries a reason; an accepted event is valid and survives Encode/Decode
// unchanged, with the same fingerprint.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(validPlaced))
	f.Add([]byte(edit(f, func(m map[string]any) { m["event_type"] = "order.cancelled"; m["reason"] = "out_of_stock" })))
	f.Add([]byte(edit(f, func(m map[string]any) { m["event_type"] = "order.shipped" })))
	f.Add([]byte(edit(f, func(m map[string]any) { item0(m)["quantity"] = 0 })))
	f.Add([]byte(`{"schema_version":1}`))
	f.Add([]byte(`{`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := Decode(body)
		if err != nil {
			var ve *ValidationError
			if !errors.As(err, &ve) || ve.Reason == "" {
				t.Fatalf("rejection without a reason: %v", err)
			}
			return
		}
		if err := ev.Validate(); err != nil {
			t.Fatalf("Decode accepted an event Validate refuses: %v", err)
		}
		b, err := Encode(ev)
		if err != nil {
			t.Fatalf("Encode of a decoded event: %v", err)
		}
		again, err := Decode(b)
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if d := cmp.Diff(ev, again); d != "" {
			t.Fatalf("round trip changed the event:\n%s", d)
		}
		if Fingerprint(ev) != Fingerprint(again) {
			t.Fatal("round trip changed the fingerprint")
		}
	})
}
