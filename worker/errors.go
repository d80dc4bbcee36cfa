package worker

import (
	"errors"
	"fmt"
	"time"
)

// permanentError marks a failure that no retry can mend: the message goes to
// the DLQ at once, with the reason in its attributes.
type permanentError struct {
	reason string
	err    error
}

func (e *permanentError) Error() string { return fmt.Sprintf("permanent (%s): %v", e.reason, e.err) }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as a failure that will never succeed. The message is
// dead-lettered immediately with reason (a short machine-readable code) and
// the error text, instead of waiting out the queue's maxReceiveCount.
func Permanent(reason string, err error) error {
	if err == nil {
		err = errors.New(reason)
	}
	return &permanentError{reason: reason, err: err}
}

// PermanentReason reports whether err is permanent, and why.
func PermanentReason(err error) (string, bool) {
	if pe, ok := errors.AsType[*permanentError](err); ok {
		return pe.reason, true
	}
	return "", false
}

// retryAfterError asks for the message to come back after a given delay.
type retryAfterError struct {
	after time.Duration
	err   error
}

func (e *retryAfterError) Error() string { return fmt.Sprintf("retry after %s: %v", e.after, e.err) }
func (e *retryAfterError) Unwrap() error { return e.err }

// RetryAfter asks for the message to be delivered again after d, overriding
// the retry policy.
func RetryAfter(d time.Duration, err error) error { return &retryAfterError{after: d, err: err} }

// RetryAfterDelay reports the delay err asks for, if it is (or wraps) a
// RetryAfter error.
func RetryAfterDelay(err error) (time.Duration, bool) {
	if ra, ok := errors.AsType[*retryAfterError](err); ok {
		return ra.after, true
	}
	return 0, false
}
