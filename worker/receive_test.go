package worker_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

// testGate is a worker.Gate the test opens and closes.
type testGate struct {
	mu      sync.Mutex
	open    chan struct{} // closed while the gate is open
	blocked int           // Wait calls blocked now
	waits   int           // Wait calls that have blocked so far
}

func newGate(open bool) *testGate {
	g := &testGate{open: make(chan struct{})}
	if open {
		close(g.open)
	}
	return g
}

func (g *testGate) Wait(ctx context.Context) error {
	g.mu.Lock()
	open := g.open
	select {
	case <-open:
		g.mu.Unlock()
		return nil
	default:
	}
	g.blocked++
	g.waits++
	g.mu.Unlock()
	defer func() { g.mu.Lock(); g.blocked--; g.mu.Unlock() }()
	select {
	case <-open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *testGate) setOpen(open bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		if !open {
			g.open = make(chan struct{})
		}
	default:
		if open {
			close(g.open)
		}
	}
}

// state returns the Wait calls blocked now and those that ever blocked.
func (g *testGate) state() (blocked, waits int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.blocked, g.waits
}

// TestGateHoldsReceivesBack: while the gate blocks no receive is made, so
// messages wait in the queue; when it opens, receiving resumes.
func TestGateHoldsReceivesBack(t *testing.T) {
	t.Parallel()
	f := newFake()
	gate := newGate(false)
	f.Intercept(sqsfake.OpReceive, func(context.Context, any) error {
		if blocked, _ := gate.state(); blocked > 0 {
			t.Error("ReceiveMessage called while the gate blocks")
		}
		return nil
	})
	var handled sync.Map
	r := start(t, f, worker.HandlerFunc(func(_ context.Context, m *worker.Message) error {
		handled.Store(m.ID, true)
		return nil
	}), worker.Config{Gate: gate})

	for i, id := range []string{"first", "second"} {
		r.eventually("waiting at the closed gate", func() bool { blocked, waits := gate.state(); return blocked == 1 && waits == i+1 })
		receives := len(f.Calls(sqsfake.OpReceive))
		msg := r.put(id, nil)
		// Give a faulty runtime a while (a watch, not a synchronisation)
		// to receive past the gate.
		if waitUntil(context.Background(), f, nil, watch, func() bool { return len(f.Calls(sqsfake.OpReceive)) > receives }) {
			t.Fatalf("a receive was made while the gate blocked")
		}
		if _, ok := handled.Load(msg); ok {
			t.Fatalf("message %s handled while the gate blocked", msg)
		}
		gate.setOpen(true)
		r.eventually("handled after the gate opened", func() bool { _, ok := handled.Load(msg); return ok })
		gate.setOpen(false)
	}
	r.eventually("waiting at the closed gate", func() bool { blocked, _ := gate.state(); return blocked == 1 })
	r.stop() // returns though the gate still blocks
}

// TestMaxInFlightIsNeverExceeded: with more messages than MaxInFlight, the
// handlers running at once never outnumber it, and do reach it.
func TestMaxInFlightIsNeverExceeded(t *testing.T) {
	t.Parallel()
	const maxInFlight, messages = 3, 12
	var running, most, finished atomic.Int32
	tokens := make(chan struct{})
	r := start(t, newFake(), worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		n := running.Add(1)
		for {
			if m := most.Load(); n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		defer func() { running.Add(-1); finished.Add(1) }()
		select {
		case <-tokens:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), worker.Config{MaxInFlight: maxInFlight})
	for range messages {
		r.put("m", nil)
	}
	// Let one handler finish at a time, each time once the slots have filled
	// up again: the runtime has every chance to start one too many.
	for done := range messages {
		want := int32(min(maxInFlight, messages-done))
		r.eventually("handlers filling the slots", func() bool { return running.Load() == want && finished.Load() == int32(done) })
		tokens <- struct{}{}
	}
	r.eventually("all handled", func() bool { return finished.Load() == messages })
	if got := most.Load(); got != maxInFlight {
		t.Errorf("at most %d handlers ran at once, want exactly MaxInFlight = %d", got, maxInFlight)
	}
}

// TestReceiveFailuresAreLoggedAndRetried: a failed receive is logged and
// the loop goes on after a pause.
func TestReceiveFailuresAreLoggedAndRetried(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.FailNext(sqsfake.OpReceive, errors.New("connection reset by peer"))
	var handled atomic.Int32
	r := start(t, f, worker.HandlerFunc(func(context.Context, *worker.Message) error {
		handled.Add(1)
		return nil
	}), worker.Config{})
	id := r.put("a", nil)
	r.eventually("handled after a failed receive", func() bool { return r.deleted(id) })
	logged := r.logs.find("receive failed")
	if len(logged) != 1 || logged[0].Attrs["consecutive_failures"] != "1" {
		t.Errorf("receive failures logged: %+v, want one with consecutive_failures=1", logged)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("handled %d times, want 1", n)
	}
}

// TestRunStopsDuringAReceiveFailurePause: shutdown does not wait out the
// pause after a failed receive.
func TestRunStopsDuringAReceiveFailurePause(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.FailNext(sqsfake.OpReceive, errors.New("throttled"), errors.New("throttled"))
	r := start(t, f, worker.HandlerFunc(func(context.Context, *worker.Message) error { return nil }), worker.Config{})
	r.eventually("a failed receive", func() bool { return len(r.logs.find("receive failed")) > 0 })
	began := time.Now()
	r.stop()
	if took := time.Since(began); took > 500*time.Millisecond {
		t.Errorf("Run took %s to stop during a receive pause", took)
	}
}

// TestAHungReceiveDoesNotStopTheConsumer: a receive whose answer never comes
// (SQS unreachable without a reset) is abandoned receiveSlack after its long
// poll should have ended, and the consumer receives again.
func TestAHungReceiveDoesNotStopTheConsumer(t *testing.T) {
	t.Parallel()
	f := newFake()
	var hung atomic.Bool
	f.Intercept(sqsfake.OpReceive, func(ctx context.Context, _ any) error {
		if hung.CompareAndSwap(false, true) {
			<-ctx.Done() // the first receive hangs until the runtime gives up on it
			return ctx.Err()
		}
		return nil
	})
	handled := make(chan string, 1)
	r := start(t, f, worker.HandlerFunc(func(_ context.Context, m *worker.Message) error {
		handled <- m.ID
		return nil
	}), worker.Config{})
	id := r.put("after the hang", nil)
	select {
	case got := <-handled:
		if got != id {
			t.Fatalf("handled %s, want %s", got, id)
		}
	case <-time.After(20 * time.Second): // WaitTime 1s + receiveSlack 10s, with room
		t.Fatal("the consumer did not receive again after a hung receive")
	}
}
