package worker

import "time"

// Observer hears what a Consumer does with its messages: the port for
// metrics, so the runtime reaches for no global registry. Its methods are
// called from many goroutines and must not block.
type Observer interface {
	// Received: a receive brought n messages.
	Received(n int)
	// InFlight: the messages being handled changed by delta (+1, -1).
	InFlight(delta int)
	// Processed: a message was handled and is being deleted.
	Processed()
	// Retried: a message was handed back for a later delivery.
	Retried()
	// DeadLettered: a message was moved to the DLQ for reason.
	DeadLettered(reason string)
	// Released: n messages received during shutdown were handed back at once.
	Released(n int)
	// Settled: a message's handling ended with outcome ("ok", "retry",
	// "dead_letter") after took, from the start of its handler.
	Settled(outcome string, took time.Duration)
}

// NopObserver hears nothing; embed it to observe only some events.
type NopObserver struct{}

// Received implements Observer.
func (NopObserver) Received(int) {}

// InFlight implements Observer.
func (NopObserver) InFlight(int) {}

// Processed implements Observer.
func (NopObserver) Processed() {}

// Retried implements Observer.
func (NopObserver) Retried() {}

// DeadLettered implements Observer.
func (NopObserver) DeadLettered(string) {}

// Released implements Observer.
func (NopObserver) Released(int) {}

// Settled implements Observer.
func (NopObserver) Settled(string, time.Duration) {}
