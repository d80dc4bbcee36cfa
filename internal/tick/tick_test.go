package tick

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestEveryCallsUntilStopped: fn runs again and again, never twice at
// once, and not at all once stop returned.
func TestEveryCallsUntilStopped(t *testing.T) {
	var calls, inside atomic.Int32
	enough := make(chan struct{})
	stop := Every(time.Millisecond, func() {
		if inside.Add(1) > 1 {
			t.Error("fn ran twice at once")
		}
		time.Sleep(2 * time.Millisecond)
		if calls.Add(1) == 3 {
			close(enough)
		}
		inside.Add(-1)
	})
	select {
	case <-enough:
	case <-time.After(10 * time.Second):
		t.Fatal("fn was not called three times within 10s")
	}
	stop()
	after := calls.Load()
	if inside.Load() != 0 {
		t.Error("fn still running after stop returned")
	}
	time.Sleep(10 * time.Millisecond)
	if calls.Load() != after {
		t.Errorf("fn called %d times after stop", calls.Load()-after)
	}
}

// TestStopBeforeTheFirstCall: a stop before d has passed means fn never runs.
func TestStopBeforeTheFirstCall(t *testing.T) {
	var calls atomic.Int32
	stop := Every(time.Hour, func() { calls.Add(1) })
	stop()
	stop2 := Every(time.Nanosecond, func() { calls.Add(1) })
	stop2()
	n := calls.Load()
	time.Sleep(5 * time.Millisecond)
	if calls.Load() != n || n > 1 {
		t.Errorf("fn called %d times, then %d; want at most one call, none after stop", n, calls.Load())
	}
}
