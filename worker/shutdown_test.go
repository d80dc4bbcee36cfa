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

// TestSoftShutdownLetsHandlersFinish: cancelling Run's context stops
// receiving, but handlers in flight run to the end with a live context, their
// messages are deleted, and only then does Run return.
func TestSoftShutdownLetsHandlersFinish(t *testing.T) {
	t.Parallel()
	started, release := make(chan string, 2), make(chan struct{})
	var ctxErrs sync.Map
	r := start(t, newFake(), worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		started <- m.ID
		<-release
		ctxErrs.Store(m.ID, ctx.Err())
		return nil
	}), worker.Config{})
	ids := []string{r.put("a", nil), r.put("b", nil)}
	for range ids {
		select {
		case <-started:
		case <-time.After(bound):
			t.Fatal("handlers did not start")
		}
	}

	r.cancel()
	select {
	case err := <-r.done:
		t.Fatalf("Run returned (%v) while handlers were still running", err)
	default:
	}
	close(release)
	r.stop()

	for _, id := range ids {
		if !r.deleted(id) {
			t.Errorf("message %s not deleted after its handler finished during shutdown", id)
		}
		if err, _ := ctxErrs.Load(id); err != nil {
			t.Errorf("handler of %s saw its context end (%v) during a soft shutdown", id, err)
		}
	}
	if vc := r.visibilityChanges(); len(vc) != 0 {
		t.Errorf("visibility changed during a soft shutdown: %+v", vc)
	}
}

// TestReceiveInFlightAtShutdownIsHandedBack: a receive already on its way
// when shutdown begins is not cut off (it gets its grace), and the messages
// it brings are made visible again at once instead of being handled.
func TestReceiveInFlightAtShutdownIsHandedBack(t *testing.T) {
	t.Parallel()
	f := newFake()
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	var receiveCtxErr atomic.Value
	f.Intercept(sqsfake.OpReceive, func(ctx context.Context, _ any) error {
		first := false
		once.Do(func() { first = true })
		if !first {
			return nil
		}
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
		}
		receiveCtxErr.Store(fmtErr(ctx.Err()))
		return nil
	})
	var handled atomic.Int32
	r := start(t, f, worker.HandlerFunc(func(context.Context, *worker.Message) error {
		handled.Add(1)
		return nil
	}), worker.Config{})
	select {
	case <-entered:
	case <-time.After(bound):
		t.Fatal("no receive started")
	}
	ids := []string{r.put("a", nil), r.put("b", nil)}
	r.cancel()
	close(release)
	r.stop()

	if got := receiveCtxErr.Load(); got != "<nil>" {
		t.Errorf("the receive in flight saw its context end (%v): it should get its grace", got)
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("%d messages received during shutdown were handled, want 0", n)
	}
	var want []visibilityChange
	for _, id := range ids {
		m := r.message(id)
		if m.ReceiveCount != 1 || m.Deleted || time.Now().Before(m.VisibleAt) {
			t.Errorf("message %s: received %d times, deleted %t, visible in %s; want received once, kept, visible now",
				id, m.ReceiveCount, m.Deleted, time.Until(m.VisibleAt))
		}
		want = append(want, visibilityChange{Receipt: m.Receipt, Timeout: 0, Batch: true})
	}
	if got := r.visibilityChanges(); !equalChanges(got, want) {
		t.Errorf("visibility changes %+v, want %+v", got, want)
	}
	if len(r.logs.find("handed back messages received during shutdown")) != 1 {
		t.Error("the hand-back was not logged")
	}
}

// TestHardShutdownCancelsHandlersWithACause: handlers still running when
// ShutdownTimeout runs out have their context cancelled with
// ErrShutdownTimeout; their messages are neither deleted nor retried nor
// dead-lettered (not a failed attempt: they come back when their visibility
// ends), whatever the handler returns, and Run returns.
func TestHardShutdownCancelsHandlersWithACause(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		result func(ctx context.Context) error
	}{
		{name: "handler returns its context's error", result: func(ctx context.Context) error { return ctx.Err() }},
		{name: "handler returns a Permanent error", result: func(ctx context.Context) error { return worker.Permanent("cut_short", ctx.Err()) }},
		{name: "handler returns a retryable error", result: func(context.Context) error { return errors.New("db: connection closed") }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			started := make(chan struct{})
			var cause atomic.Value
			r := start(t, newFake(), worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
				close(started)
				<-ctx.Done()
				cause.Store(fmtErr(context.Cause(ctx)))
				return tt.result(ctx)
			}), worker.Config{ShutdownTimeout: 50 * time.Millisecond})
			id := r.put("slow", nil)
			select {
			case <-started:
			case <-time.After(bound):
				t.Fatal("handler did not start")
			}
			began := time.Now()
			r.stop()
			if took := time.Since(began); took > time.Second {
				t.Errorf("Run took %s to return after a 50ms shutdown timeout", took)
			}
			if got, want := cause.Load(), worker.ErrShutdownTimeout.Error(); got != want {
				t.Errorf("handler context cause %v, want %q", got, want)
			}
			if r.deleted(id) {
				t.Error("message of a handler cut short by shutdown was deleted")
			}
			if vc := r.visibilityChanges(); len(vc) != 0 {
				t.Errorf("message of a handler cut short by shutdown was retried: %+v", vc)
			}
			if sent := r.sqs.Calls(sqsfake.OpSend); len(sent) != 0 {
				t.Errorf("message of a handler cut short by shutdown was dead-lettered: %d sends", len(sent))
			}
			if len(r.logs.find("handler interrupted by shutdown")) != 1 {
				t.Error("the interruption was not logged")
			}
		})
	}
}

func fmtErr(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

func equalChanges(got, want []visibilityChange) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			found = found || g == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestHandlerIgnoringCancellationDoesNotHoldShutdown: a handler that goes on
// after its context was cancelled at the shutdown timeout must not keep Run
// (and the process) alive: Run returns without it within the abandon bound,
// and when the handler finally returns, its message is not deleted (it comes
// back) and nothing panics.
func TestHandlerIgnoringCancellationDoesNotHoldShutdown(t *testing.T) {
	t.Parallel()
	started, release := make(chan struct{}), make(chan struct{})
	returned := make(chan struct{})
	r := start(t, newFake(), worker.HandlerFunc(func(context.Context, *worker.Message) error {
		close(started)
		<-release // ignores its context
		defer close(returned)
		return nil
	}), worker.Config{ShutdownTimeout: 50 * time.Millisecond})
	id := r.put("stubborn", nil)
	select {
	case <-started:
	case <-time.After(bound):
		t.Fatal("handler did not start")
	}
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the rig's cleanup
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Run still waits for a handler that ignores its cancellation")
	}
	if len(r.logs.find("in-flight handlers ignored their cancellation")) != 1 {
		t.Error("abandoning the handler was not logged")
	}
	close(release)
	select {
	case <-returned:
	case <-time.After(bound):
		t.Fatal("handler did not return after its release")
	}
	if r.deleted(id) {
		t.Error("the message of an abandoned handler was deleted")
	}
}
