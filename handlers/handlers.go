// Package handlers adapts the order handlers (billing, inventory,
// notification: one package each) to the worker runtime. The handlers and
// the middleware below return domain errors; Adapt alone turns what an error
// means (resilience.Classify) into the runtime's outcome.
package handlers

import (
	"context"
	"errors"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/worker"
)

// EventFunc handles one decoded, valid event.
type EventFunc func(ctx context.Context, ev events.Event) error

// Adapt returns fn as the runtime's handler: it decodes and validates the
// message body, annotates the message's log lines, runs fn, and settles
// what its error means, in one place:
//
//	nil                     done: the message is deleted
//	permanent (a reason)    dead-lettered at once with the reason: an
//	                        invalid event, an unknown SKU, a conflicting
//	                        payload, a constraint violation, an SMTP refusal
//	held                    back after the hold (resilience.HeldError): at
//	                        once-ish for another delivery's lease or claim
//	                        (holderWait), exactly after it for this
//	                        delivery's kept email claim
//	anything else           back per the runtime's redelivery policy
func Adapt(fn EventFunc) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		ev, err := events.Decode(m.Body)
		if err == nil {
			m.Annotate("event_id", ev.EventID, "event_type", ev.EventType, "order_id", ev.Order.OrderID)
			err = fn(ctx, ev)
		}
		return outcome(ctx, err)
	})
}

func outcome(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	switch f := resilience.Classify(err); f.Class {
	case resilience.Permanent:
		return worker.Permanent(f.Reason, err)
	case resilience.Wait:
		var held *resilience.HeldError
		errors.As(err, &held)
		if held.ByOther {
			return worker.RetryAfter(holderWait(ctx, held.Remaining), err)
		}
		return worker.RetryAfter(held.Remaining, err)
	case resilience.Transient, resilience.Unavailable:
		// The runtime retries it with its backoff.
	}
	return err
}

// maxHolderWait is the longest an early look waits for another delivery's
// hold: the holder usually finishes within milliseconds.
const maxHolderWait = 5 * time.Second

// holderWait is how long a delivery that found its work held by another
// delivery stays away before it looks again. The first two receives look
// again after at most maxHolderWait; from the third on it waits out the
// holder's remaining time, because every receive counts towards
// maxReceiveCount and a dead holder's lease can outlast many short waits.
func holderWait(ctx context.Context, remaining time.Duration) time.Duration {
	if m, ok := worker.FromContext(ctx); ok && m.ReceiveCount > 2 {
		return max(remaining+time.Second, maxHolderWait)
	}
	return min(max(remaining, time.Second), maxHolderWait)
}
