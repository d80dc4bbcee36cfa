package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

// TestDeletesAreBatched: messages finishing together are deleted in
// DeleteMessageBatch calls of at most ten entries, each exactly once.
func TestDeletesAreBatched(t *testing.T) {
	t.Parallel()
	const messages = 20
	var started atomic.Int32
	allStarted := make(chan struct{})
	r := start(t, newFake(), worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		if started.Add(1) == messages {
			close(allStarted)
		}
		select { // finish together, so the deletes come in a burst
		case <-allStarted:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}), worker.Config{MaxInFlight: messages})
	var ids []string
	for range messages {
		ids = append(ids, r.put("m", nil))
	}
	r.eventually("all deleted", func() bool { return !slices.ContainsFunc(ids, func(id string) bool { return !r.deleted(id) }) })

	batches := r.deleteBatches()
	seen := map[string]bool{}
	for _, b := range batches {
		if len(b) > 10 {
			t.Errorf("a DeleteMessageBatch of %d entries (SQS allows 10)", len(b))
		}
		for _, receipt := range b {
			if seen[receipt] {
				t.Errorf("receipt %s deleted twice", receipt)
			}
			seen[receipt] = true
		}
	}
	if len(batches) >= messages {
		t.Errorf("%d DeleteMessageBatch calls for %d messages finishing together: not batched", len(batches), messages)
	}
}

// TestDeleteFailures: a delete that fails is logged and left (the message
// comes back and is skipped as a duplicate), never retried in a loop;
// ReceiptHandleIsInvalid means there is nothing left to delete.
func TestDeleteFailures(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name        string
		entryCode   string // fails the entry of message "a"
		batchErr    error  // fails the whole call
		wantLog     string // "" for no error log
		wantDeleted map[string]bool
	}{
		{name: "failed entry is logged and left", entryCode: "InternalError",
			wantLog: "delete failed", wantDeleted: map[string]bool{"a": false, "b": true}},
		{name: "ReceiptHandleIsInvalid counts as success", entryCode: "ReceiptHandleIsInvalid",
			wantDeleted: map[string]bool{"a": false, "b": true}},
		{name: "failed call is logged and left", batchErr: errors.New("connection reset by peer"),
			wantLog: "delete batch failed", wantDeleted: map[string]bool{"a": false, "b": false}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			var rs receipts
			f.FailEntries(func(_ sqsfake.Op, receipt string) string {
				if receipt == rs.of("a") {
					return tt.entryCode
				}
				return ""
			})
			if tt.batchErr != nil {
				f.FailNext(sqsfake.OpDeleteBatch, tt.batchErr)
			}
			var handled sync.WaitGroup
			handled.Add(2)
			r := start(t, f, worker.HandlerFunc(func(_ context.Context, m *worker.Message) error {
				rs.record(m)
				handled.Done()
				handled.Wait() // both finish together: one batch
				return nil
			}), worker.Config{})
			for _, id := range []string{"a", "b"} {
				f.Put(srcURL, sqsfake.Message{ID: id, Body: id})
			}
			r.eventually("a delete call", func() bool { return len(r.deleteBatches()) > 0 })
			r.stop()

			for id, want := range tt.wantDeleted {
				if got := r.deleted(id); got != want {
					t.Errorf("message %s deleted: %t, want %t", id, got, want)
				}
				if n := r.deleteAttempts(rs.of(id)); n != 1 {
					t.Errorf("message %s: %d delete attempts, want 1", id, n)
				}
			}
			errs := slices.DeleteFunc(r.logs.records(), func(rec logRecord) bool { return !strings.HasPrefix(rec.Msg, "delete") })
			switch {
			case tt.wantLog == "" && len(errs) > 0:
				t.Errorf("logged %+v, want nothing", errs)
			case tt.wantLog != "" && (len(errs) != 1 || !strings.HasPrefix(errs[0].Msg, tt.wantLog)):
				t.Errorf("logged %+v, want one %q", errs, tt.wantLog)
			case tt.entryCode != "" && tt.wantLog != "" && errs[0].Attrs["code"] != tt.entryCode:
				t.Errorf("logged code %q, want %q", errs[0].Attrs["code"], tt.entryCode)
			}
		})
	}
}

// TestHeartbeatExtendsSlowHandlers: a handler running past half the
// visibility timeout has its message extended by the visibility timeout, so
// it is not redelivered meanwhile.
func TestHeartbeatExtendsSlowHandlers(t *testing.T) {
	t.Parallel()
	f := newFake()
	extended := make(chan error, 1)
	r := start(t, f, worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		ok := waitUntil(ctx, f, nil, bound, func() bool {
			return slices.ContainsFunc(f.Calls(sqsfake.OpChangeVisibility), func(c sqsfake.Call) bool {
				in, ok := c.In.(*sqs.ChangeMessageVisibilityInput)
				return ok && c.Err == nil && aws.ToString(in.ReceiptHandle) == m.ReceiptHandle()
			})
		})
		if !ok {
			extended <- errors.New("no heartbeat")
			return errors.New("no heartbeat")
		}
		extended <- nil
		return nil
	}), worker.Config{})
	id := r.put("slow", nil)
	select {
	case err := <-extended:
		if err != nil {
			t.Fatalf("handler: %v", err)
		}
	case <-time.After(bound):
		t.Fatal("handler did not finish")
	}
	r.eventually("deleted", func() bool { return r.deleted(id) })
	m := r.message(id)
	if got := r.visibilityChanges(); len(got) != 1 || got[0] != (visibilityChange{Receipt: m.Receipt, Timeout: visibility}) {
		t.Errorf("visibility changes %+v, want one heartbeat extending by %s", got, visibility)
	}
	if m.ReceiveCount != 1 {
		t.Errorf("message received %d times, want 1", m.ReceiveCount)
	}
}

// TestHeartbeatFailureDoesNotStopTheHandler: a failed extension is logged;
// the handler goes on and its success still counts.
func TestHeartbeatFailureDoesNotStopTheHandler(t *testing.T) {
	t.Parallel()
	f := newFake()
	f.Intercept(sqsfake.OpChangeVisibility, func(context.Context, any) error { return errors.New("throttled") })
	var r *rig // set before any message is put
	ctxErr := make(chan error, 1)
	r = start(t, f, worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		waitUntil(ctx, nil, r.logs, bound, func() bool { return len(r.logs.find("visibility heartbeat failed")) > 0 })
		ctxErr <- ctx.Err()
		return nil
	}), worker.Config{})
	id := r.put("slow", nil)
	r.eventually("deleted", func() bool { return r.deleted(id) })
	if err := <-ctxErr; err != nil {
		t.Errorf("handler context ended (%v) after a heartbeat failure", err)
	}
	logged := r.logs.find("visibility heartbeat failed")
	if len(logged) == 0 || !strings.Contains(logged[0].Attrs["err"], "throttled") {
		t.Errorf("heartbeat failure logged as %+v, want the error", logged)
	}
}

// TestFailedHandlersAreRetried: a failure (a panic included) makes the
// message visible again after the retry policy's delay, or the one
// RetryAfter asks for; it is not deleted and the consumer goes on.
func TestFailedHandlersAreRetried(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		handle    func(ctx context.Context) error
		cfg       worker.Config
		wantDelay time.Duration
		wantErr   []string // in the logged error
	}{
		{name: "error", handle: func(context.Context) error { return errors.New("db down") },
			wantDelay: policyDelay, wantErr: []string{"db down"}},
		{name: "RetryAfter overrides the policy", handle: func(context.Context) error {
			return fmt.Errorf("reserve: %w", worker.RetryAfter(90*time.Second, errors.New("locked")))
		},
			wantDelay: 90 * time.Second, wantErr: []string{"locked"}},
		{name: "RetryAfter is capped at the SQS maximum", handle: func(context.Context) error { return worker.RetryAfter(24*time.Hour, errors.New("later")) },
			wantDelay: 12 * time.Hour},
		{name: "negative RetryAfter means at once", handle: func(context.Context) error { return worker.RetryAfter(-time.Second, errors.New("now")) },
			wantDelay: 0},
		{name: "panic is recovered with its stack", handle: func(context.Context) error { panic("boom") },
			wantDelay: policyDelay, wantErr: []string{"handler panic: boom", "goroutine ", "settle_test.go"}},
		{name: "handler timeout is a failure", cfg: worker.Config{HandlerTimeout: 20 * time.Millisecond},
			handle: func(ctx context.Context) error {
				<-ctx.Done()
				return fmt.Errorf("query: %w", context.Cause(ctx))
			},
			wantDelay: policyDelay, wantErr: []string{worker.ErrHandlerTimeout.Error()}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var first receipts // of the failing delivery
			r := start(t, newFake(), worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
				if string(m.Body) == "fail" && m.ReceiveCount == 1 {
					first.record(m)
					return tt.handle(ctx)
				}
				return nil
			}), tt.cfg)
			id := r.put("fail", nil)
			r.eventually("a retry", func() bool { return len(r.visibilityChanges()) > 0 })
			receipt := first.of(id)
			if got, want := r.visibilityChanges()[0], (visibilityChange{Receipt: receipt, Timeout: tt.wantDelay}); got != want {
				t.Errorf("visibility change %+v, want %+v", got, want)
			}
			logged := r.logs.find("handler failed; will retry")
			if len(logged) != 1 {
				t.Fatalf("retries logged: %+v, want 1", logged)
			}
			for _, s := range tt.wantErr {
				if !strings.Contains(logged[0].Attrs["err"], s) {
					t.Errorf("logged error %q lacks %q", logged[0].Attrs["err"], s)
				}
			}
			next := r.put("ok", nil)
			r.eventually("the next message handled", func() bool { return r.deleted(next) })
			if n := r.deleteAttempts(receipt); n != 0 {
				t.Errorf("a failed delivery was deleted (%d attempts)", n)
			}
		})
	}
}
