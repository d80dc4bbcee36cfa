// Package tick runs a function every so often while something else runs,
// without a goroutine of its own in between: the per-message heartbeats
// (the visibility extension, the idempotency lease's renewal) start and
// stop with every message, and almost never fire.
package tick

import (
	"sync"
	"time"
)

// Every calls fn every d (d after the previous call returned) until stop,
// which returns once a call in progress has returned: after stop, fn is
// not running and will not run again. Nothing runs, and no goroutine
// exists, until the first d has passed.
func Every(d time.Duration, fn func()) (stop func()) {
	var (
		mu      sync.Mutex
		stopped bool
		running sync.WaitGroup
		t       *time.Timer
	)
	tick := func() {
		mu.Lock()
		if stopped {
			mu.Unlock()
			return
		}
		running.Add(1)
		mu.Unlock()
		defer running.Done()
		fn()
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			t.Reset(d)
		}
	}
	mu.Lock()
	t = time.AfterFunc(d, tick)
	mu.Unlock()
	return func() {
		mu.Lock()
		stopped = true
		t.Stop()
		mu.Unlock()
		running.Wait()
	}
}
