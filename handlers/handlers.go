// Package handlers adapts the order handlers (billing, inventory,
// notification: one package each) to the worker runtime.
package handlers

import (
	"context"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/worker"
)

// EventFunc handles one decoded, valid event.
type EventFunc func(ctx context.Context, ev events.Event) error

// Decode returns a worker.Handler that decodes and validates the message body
// and passes the event to fn. An event that fails validation is permanent:
// it goes to the DLQ at once with the rejection reason.
func Decode(fn EventFunc) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		ev, err := events.Decode(m.Body)
		if err != nil {
			reason, _ := events.ReasonOf(err)
			return worker.Permanent(string(reason), err)
		}
		m.Annotate("event_id", ev.EventID, "event_type", ev.EventType, "order_id", ev.Order.OrderID)
		return fn(ctx, ev)
	})
}
