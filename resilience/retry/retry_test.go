package retry

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestDo(t *testing.T) {
	blip, final := errors.New("blip"), errors.New("final")
	tests := []struct {
		name        string
		policy      Policy
		errs        []error // returned by successive calls; nil after the list
		wantCalls   int
		wantRetries int
		wantErr     error
	}{
		{"success at once", Policy{Tries: 3}, nil, 1, 0, nil},
		{"a blip, then success", Policy{Tries: 3}, []error{blip}, 2, 1, nil},
		{"tries run out: the last error", Policy{Tries: 3}, []error{blip, blip, final, blip}, 3, 2, final},
		{"stop returns at once, unwrapped", Policy{Tries: 3}, []error{Stop(final)}, 1, 0, final},
		{"no limit but ctx: goes on", Policy{}, []error{blip, blip, blip, blip, blip}, 6, 5, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.policy.Initial, tt.policy.MaxInterval = time.Millisecond, time.Millisecond
			calls, retries := 0, 0
			err := Do(context.Background(), tt.policy, func(error) { retries++ }, func(context.Context) error {
				calls++
				if calls <= len(tt.errs) {
					return tt.errs[calls-1]
				}
				return nil
			})
			if calls != tt.wantCalls || retries != tt.wantRetries || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("calls %d, retries %d, err %v; want %d, %d, %v", calls, retries, err, tt.wantCalls, tt.wantRetries, tt.wantErr)
			}
		})
	}
}

// TestDoEndsWithItsContext: with no limit of its own, the retry ends when
// its context does and returns the last failure, not the context's error.
func TestDoEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	down := errors.New("database down")
	err := Do(ctx, Policy{Initial: time.Millisecond, MaxInterval: 5 * time.Millisecond}, nil, func(context.Context) error { return down })
	if !errors.Is(err, down) {
		t.Errorf("err = %v, want the last failure", err)
	}
}
