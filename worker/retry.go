package worker

import (
	"math/rand/v2"
	"time"
)

// RetryPolicy decides how long a failed message stays invisible before its
// next delivery, from how many times it has been received.
type RetryPolicy interface {
	NextDelay(receiveCount int) time.Duration
}

// ExponentialRetry doubles the delay with every receive, from Base up to Max,
// and picks uniformly in [d/2, d] so retries of a burst spread out.
type ExponentialRetry struct {
	Base time.Duration // Defaults to RetryBaseDefault.
	Max  time.Duration // Defaults to RetryMaxDefault.
}

// Retry policy defaults. SQS caps a visibility timeout at 12 hours.
const (
	RetryBaseDefault = 2 * time.Second
	RetryMaxDefault  = 5 * time.Minute
	maxVisibility    = 12 * time.Hour
)

// NextDelay implements RetryPolicy.
func (r ExponentialRetry) NextDelay(receiveCount int) time.Duration {
	base, ceiling := r.Base, r.Max
	if base <= 0 {
		base = RetryBaseDefault
	}
	if ceiling <= 0 {
		ceiling = RetryMaxDefault
	}
	d := base
	for i := 1; i < receiveCount && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling, maxVisibility)
	return d/2 + rand.N(d/2+1)
}
