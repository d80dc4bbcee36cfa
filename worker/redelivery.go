package worker

import (
	"math/rand/v2"
	"time"
)

// RedeliveryPolicy decides how long a failed message stays invisible before
// its next delivery, from how many times it has been received. (In-process
// retries of a blip are the handlers' business, not the runtime's.)
type RedeliveryPolicy interface {
	NextDelay(receiveCount int) time.Duration
}

// ExponentialRedelivery doubles the delay with every receive, from Base up
// to Max, and picks uniformly in [d/2, d] so redeliveries of a burst spread
// out.
type ExponentialRedelivery struct {
	Base time.Duration // Defaults to RedeliveryBaseDefault.
	Max  time.Duration // Defaults to RedeliveryMaxDefault.
}

// Redelivery defaults. SQS caps a visibility timeout at 12 hours.
const (
	RedeliveryBaseDefault = 2 * time.Second
	RedeliveryMaxDefault  = 5 * time.Minute
	maxVisibility         = 12 * time.Hour
)

// NextDelay implements RedeliveryPolicy.
func (r ExponentialRedelivery) NextDelay(receiveCount int) time.Duration {
	base, ceiling := r.Base, r.Max
	if base <= 0 {
		base = RedeliveryBaseDefault
	}
	if ceiling <= 0 {
		ceiling = RedeliveryMaxDefault
	}
	d := base
	for i := 1; i < receiveCount && d < ceiling; i++ {
		d *= 2
	}
	d = min(d, ceiling, maxVisibility)
	return d/2 + rand.N(d/2+1) //nolint:gosec // G404: jitter spreads retries; nothing secret is drawn
}
