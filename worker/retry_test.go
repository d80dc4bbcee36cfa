package worker

import (
	"context"
	"testing"
	"time"
)

func contextWith(m *Message) context.Context {
	return context.WithValue(context.Background(), messageKey{}, m)
}

func TestExponentialRetryGrowsWithJitterAndStopsAtTheCap(t *testing.T) {
	r := ExponentialRetry{Base: 2 * time.Second, Max: 30 * time.Second}
	for _, tt := range []struct {
		receives int
		ceiling  time.Duration // the delay before jitter
	}{
		{1, 2 * time.Second}, {2, 4 * time.Second}, {3, 8 * time.Second}, {4, 16 * time.Second},
		{5, 30 * time.Second}, {50, 30 * time.Second},
	} {
		for range 200 {
			d := r.NextDelay(tt.receives)
			if d < tt.ceiling/2 || d > tt.ceiling {
				t.Fatalf("receive %d: delay %s outside [%s, %s]", tt.receives, d, tt.ceiling/2, tt.ceiling)
			}
		}
	}
	if d := (ExponentialRetry{}).NextDelay(100); d > RetryMaxDefault {
		t.Errorf("default policy delay %s over its cap %s", d, RetryMaxDefault)
	}
}

func TestWaitForHolderBoundsReceives(t *testing.T) {
	early, late := &Message{ReceiveCount: 1}, &Message{ReceiveCount: 3}
	for _, tt := range []struct {
		m         *Message
		remaining time.Duration
		want      time.Duration
	}{
		{early, 100 * time.Millisecond, time.Second},    // at least a second
		{early, 90 * time.Second, 5 * time.Second},      // early looks come back soon
		{late, 90 * time.Second, 91 * time.Second},      // later ones wait the holder out
		{late, 100 * time.Millisecond, 5 * time.Second}, // never sooner than the short wait
	} {
		ctx := contextWith(tt.m)
		if got := WaitForHolder(ctx, tt.remaining, 5*time.Second); got != tt.want {
			t.Errorf("receive %d, remaining %s: wait %s, want %s", tt.m.ReceiveCount, tt.remaining, got, tt.want)
		}
	}
}
