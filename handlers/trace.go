package handlers

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/resilience"
)

const tracerName = "github.com/orderpipe/orderpipe/handlers"

// Traced gives every event next handles a span, "<handler> <event type>",
// the child of the delivery's span (the runtime's): the idempotency keys,
// the retries and the handler's database, Redis and SMTP work are its
// children. The span names the event (handler, event_id, event_type,
// order_id: never the customer) and, on failure, what the error means
// (resilience.Classify), never its text, which can carry what the event
// holds. With tp nil it returns next: no tracing, no cost.
func Traced(tp trace.TracerProvider, handler string, next EventFunc) EventFunc {
	if tp == nil {
		return next
	}
	tracer := tp.Tracer(tracerName)
	return func(ctx context.Context, ev events.Event) error {
		ctx, span := tracer.Start(ctx, handler+" "+string(ev.EventType), trace.WithAttributes(
			attribute.String("handler", handler), attribute.String("event_id", string(ev.EventID)),
			attribute.String("event_type", string(ev.EventType)), attribute.String("order_id", ev.Order.OrderID),
		))
		defer span.End()
		err := next(ctx, ev)
		if err != nil {
			f := resilience.Classify(err)
			span.SetAttributes(attribute.String("error.type", f.Reason), attribute.String("error.class", f.Class.String()))
			span.SetStatus(codes.Error, f.Class.String()+": "+f.Reason)
		}
		return err
	}
}
