package worker

import (
	"context"
	"time"
)

// WaitForHolder is how long a delivery that found its work claimed by
// another (a lease, a claim with remaining time left) should stay away
// before it looks again. The holder usually finishes within milliseconds,
// so the first two receives look again after at most short; from the third
// on the delivery waits out the holder's remaining time, because every
// receive counts towards maxReceiveCount and a dead holder's lease can
// outlast many short waits.
func WaitForHolder(ctx context.Context, remaining, short time.Duration) time.Duration {
	if m, ok := FromContext(ctx); ok && m.ReceiveCount > 2 {
		return max(remaining+time.Second, short)
	}
	return min(max(remaining, time.Second), short)
}
