package worker

import (
	"testing"
	"time"
)

func TestExponentialRetryGrowsWithJitterAndStopsAtTheCap(t *testing.T) {
	r := ExponentialRedelivery{Base: 2 * time.Second, Max: 30 * time.Second}
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
	if d := (ExponentialRedelivery{}).NextDelay(100); d > RedeliveryMaxDefault {
		t.Errorf("default policy delay %s over its cap %s", d, RedeliveryMaxDefault)
	}
}
