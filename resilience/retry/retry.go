// Package retry is the one in-process retry loop of orderpipe: exponential
// backoff with jitter (cenkalti/backoff), bounded by tries, elapsed time and
// the context. It decides nothing about errors: callers say which ones stop
// it (Stop). resilience.Retry builds the handlers' retry of a blip on it;
// the email courier keeps recording an accepted email with it; the SNS
// publisher resends the entries SNS failed with it. Redelivery through the
// queue is another thing, the runtime's (worker.RedeliveryPolicy).
package retry

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Policy bounds a retry. The zero Policy tries until ctx ends, backing off
// from InitialDefault to MaxIntervalDefault.
type Policy struct {
	// Tries is the most attempts in all; 0 for no limit (ctx or
	// MaxElapsed must end it).
	Tries uint
	// Initial is the first backoff; it grows by half each time, with
	// jitter. Defaults to InitialDefault.
	Initial time.Duration
	// MaxInterval caps one backoff. Defaults to MaxIntervalDefault.
	MaxInterval time.Duration
	// MaxElapsed bounds the whole retry; 0 for no bound but ctx's.
	MaxElapsed time.Duration
}

// Policy defaults.
const (
	InitialDefault     = 100 * time.Millisecond
	MaxIntervalDefault = 2 * time.Second
)

// Do runs fn until it succeeds, returns an error made by Stop, or the policy
// or ctx is spent. It returns fn's last error (unwrapped from Stop), or
// ctx's cause if fn never ran. onRetry, if not nil, hears each error that
// will be retried, before the wait.
func Do(ctx context.Context, p Policy, onRetry func(error), fn func(context.Context) error) error {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.MaxInterval = orDefault(p.Initial, InitialDefault), orDefault(p.MaxInterval, MaxIntervalDefault)
	opts := []backoff.RetryOption{backoff.WithBackOff(eb), backoff.WithMaxTries(p.Tries), backoff.WithMaxElapsedTime(p.MaxElapsed)}
	if onRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, _ time.Duration) { onRetry(err) }))
	}
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		last = fn(ctx)
		var stop *stopError
		switch {
		case last == nil:
			return struct{}{}, nil
		case errors.As(last, &stop):
			last = stop.err
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, opts...)
	if last != nil {
		return last
	}
	return err
}

// Stop wraps an error that Do must return at once: a decision already made
// (permanent, come back later) rather than a blip.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

func orDefault(v, d time.Duration) time.Duration {
	if v <= 0 {
		return d
	}
	return v
}
