package events_test

import (
	"encoding/hex"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/events"
)

// benchEvent is a typical order.placed: three items, a coupon.
var benchEvent = events.Event{
	EventID: "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", EventType: events.OrderPlaced, SchemaVersion: events.SchemaVersion,
	OccurredAt: time.Date(2026, 11, 24, 10, 0, 0, 123456789, time.UTC),
	Order: events.Order{
		OrderID:  "ord-0b6d1c64-3f7a-4a52-9d0e-1f2a3b4c5d6e",
		Customer: events.Customer{ID: "cus-01234", Email: "customer01234@example.com", Name: "Customer 01234"},
		Currency: "USD",
		Items: []events.Item{
			{SKU: "MUG-CLASSIC", Quantity: 2}, {SKU: "TEE-BLACK-M", Quantity: 1}, {SKU: "STICKER-PACK", Quantity: 3},
		},
		CouponCode: "SAVE10",
	},
}

func benchBody(b *testing.B) []byte {
	b.Helper()
	body, err := events.Encode(benchEvent)
	if err != nil {
		b.Fatal(err)
	}
	return body
}

// BenchmarkDecode is the first step of every message: parse the envelope,
// then the event, then validate it.
func BenchmarkDecode(b *testing.B) {
	body := benchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Decode(body); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkValidate is the contract check alone (Decode and the publisher run it).
func BenchmarkValidate(b *testing.B) {
	ev := benchEvent
	b.ReportAllocs()
	for b.Loop() {
		if err := ev.Validate(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFingerprint is the idempotency fingerprint, as the Redis fast
// path uses it (hex) and the ledger stores it (bytes): once per handler per message.
func BenchmarkFingerprint(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		fp := events.Fingerprint(benchEvent)
		_ = hex.EncodeToString(fp[:])
	}
}

// BenchmarkEncode is the publisher's side: validate and marshal.
func BenchmarkEncode(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := events.Encode(benchEvent); err != nil {
			b.Fatal(err)
		}
	}
}
