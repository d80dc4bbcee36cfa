package resilience

import (
	"context"
	"errors"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// RetryPolicy bounds the in-process retry of a blip. Beyond it, the message
// goes back to its queue with a visibility delay that grows with its
// receive count (worker.RetryPolicy).
type RetryPolicy struct {
	// Tries is the most attempts in all. Defaults to 3.
	Tries uint
	// Initial is the first backoff; it doubles, with jitter. Defaults to 50ms.
	Initial time.Duration
	// MaxElapsed bounds the whole retry. Defaults to 2s.
	MaxElapsed time.Duration
}

// Retry runs fn until it succeeds, fails permanently, meets an open
// breaker, or the policy is spent. onRetry (if not nil) hears each retry.
func Retry(ctx context.Context, p RetryPolicy, onRetry func(Failure), fn func(context.Context) error) error {
	if p.Tries == 0 {
		p.Tries = 3
	}
	if p.Initial <= 0 {
		p.Initial = 50 * time.Millisecond
	}
	if p.MaxElapsed <= 0 {
		p.MaxElapsed = 2 * time.Second
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.MaxInterval = p.Initial, p.MaxElapsed/2
	attempt := 0
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempt++
		err := fn(ctx)
		if err == nil {
			return struct{}{}, nil
		}
		var stop *stopError
		if errors.As(err, &stop) {
			return struct{}{}, backoff.Permanent(stop.err)
		}
		f := Classify(err)
		if f.Class == Permanent || errors.Is(err, ErrOpen) || ctx.Err() != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		if attempt < int(p.Tries) && onRetry != nil {
			onRetry(f)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(eb), backoff.WithMaxTries(p.Tries), backoff.WithMaxElapsedTime(p.MaxElapsed))
	return err
}

// Stop wraps an error that Retry must return at once, unwrapped: a
// decision already made (dead-letter it, come back later) rather than a blip.
func Stop(err error) error {
	if err == nil {
		return nil
	}
	return &stopError{err}
}

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }
