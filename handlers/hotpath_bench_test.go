package handlers_test

import (
	"context"
	"encoding/hex"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/worker"
)

// messagePath is a typical order's body, and the handler work of
// BenchmarkMessagePath on it.
func messagePath(b *testing.B) ([]byte, handlers.EventFunc) {
	b.Helper()
	ev := events.Event{
		EventID: "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", EventType: events.OrderPlaced, SchemaVersion: events.SchemaVersion,
		OccurredAt: time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC),
		Order: events.Order{
			OrderID:  "ord-0b6d1c64-3f7a-4a52-9d0e-1f2a3b4c5d6e",
			Customer: events.Customer{ID: "cus-01234", Email: "customer01234@example.com", Name: "Customer 01234"},
			Currency: "USD", CouponCode: "SAVE10",
			Items: []events.Item{{SKU: "MUG-CLASSIC", Quantity: 2}, {SKU: "TEE-BLACK-M", Quantity: 1}, {SKU: "STICKER-PACK", Quantity: 3}},
		},
	}
	body, err := events.Encode(ev)
	if err != nil {
		b.Fatal(err)
	}
	products := map[events.SKU]catalog.Product{
		"MUG-CLASSIC":  {SKU: "MUG-CLASSIC", Name: "Classic mug", Price: 1299},
		"TEE-BLACK-M":  {SKU: "TEE-BLACK-M", Name: "Black T-shirt (M)", Price: 1999},
		"STICKER-PACK": {SKU: "STICKER-PACK", Name: "Sticker pack", Price: 199},
	}
	coupon := catalog.Coupon{Code: "SAVE10", Kind: catalog.CouponPercent, PercentBP: 1000}
	return body, func(_ context.Context, ev events.Event) error {
		fp := events.Fingerprint(ev)
		_ = hex.EncodeToString(fp[:])
		_, subtotal, err := billing.PriceLines(ev.Order, products)
		if err != nil {
			return err
		}
		_, err = billing.Discount(subtotal, coupon, ev.OccurredAt)
		return err
	}
}

// BenchmarkMessagePath is the CPU a message costs the worker before any
// I/O: decode and validate the body (handlers.Decode), compute the
// idempotency fingerprint (as handlers.Idempotent does), and price the
// order with its coupon (billing). Redis, the database and SMTP are left out.
func BenchmarkMessagePath(b *testing.B) {
	body, fn := messagePath(b)
	h := handlers.Adapt(fn)
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		m := &worker.Message{ID: "m", Body: body}
		if err := h.Handle(ctx, m); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMessagePathTraced is BenchmarkMessagePath with the tracing a
// message gets in the worker: "off" as the worker runs without OTEL_*
// variables (handlers.Traced with no provider returns the handler itself;
// the runtime extracts nothing), "on" with every trace sampled and the
// spans discarded at export: the runtime's part (extract the publisher's
// traceparent, start and end the consumer span) and the handler's span.
func BenchmarkMessagePathTraced(b *testing.B) {
	body, fn := messagePath(b)
	attrs := propagation.MapCarrier{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	for _, tc := range []struct {
		name string
		tp   trace.TracerProvider
	}{
		{"off", nil},
		{"on", sdktrace.NewTracerProvider(sdktrace.WithSyncer(tracetest.NewNoopExporter()))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			h := handlers.Adapt(handlers.Traced(tc.tp, "billing", fn))
			ctx := context.Background()
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				m := &worker.Message{ID: "m", Body: body}
				mctx, span := ctx, trace.Span(nil)
				if tc.tp != nil { // what worker.Consumer does per message with a provider
					mctx, span = tc.tp.Tracer("bench").Start(propagation.TraceContext{}.Extract(ctx, attrs), "process orders-billing", trace.WithSpanKind(trace.SpanKindConsumer))
				}
				if err := h.Handle(mctx, m); err != nil {
					b.Fatal(err)
				}
				if span != nil {
					span.End()
				}
			}
		})
	}
}
