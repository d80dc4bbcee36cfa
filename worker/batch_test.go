package worker_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

// batchRig is a Batch on the fake SQS and the messages it was handed, as
// an event source mapping receives them.
type batchRig struct {
	t    *testing.T
	sqs  *sqsfake.Fake
	logs *logRecorder
	b    *worker.Batch
}

func newBatch(t *testing.T, h worker.Handler, cfg worker.BatchConfig) *batchRig {
	t.Helper()
	f := newFake()
	logs := &logRecorder{state: &logState{changed: make(chan struct{})}}
	cfg.Name, cfg.QueueURL, cfg.DLQURL, cfg.Logger = "test", srcURL, dlqURL, slog.New(logs)
	cfg.VisibilityTimeout = visibility
	if cfg.Redelivery == nil {
		cfg.Redelivery = fixedRetry(policyDelay)
	}
	b, err := worker.NewBatch(f, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, rec := range logs.records() {
				t.Logf("log: %s %s %v", rec.Level, rec.Msg, rec.Attrs)
			}
		}
	})
	return &batchRig{t: t, sqs: f, logs: logs, b: b}
}

// receive puts bodies on the queue and receives them, as the event source
// does before it invokes the function.
func (r *batchRig) receive(bodies ...string) []*worker.Message {
	r.t.Helper()
	for _, b := range bodies {
		r.sqs.Put(srcURL, sqsfake.Message{Body: b})
	}
	out, err := r.sqs.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(srcURL), MaxNumberOfMessages: int32(len(bodies)),
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
	})
	if err != nil || len(out.Messages) != len(bodies) {
		r.t.Fatalf("received %d of %d: %v", len(out.Messages), len(bodies), err)
	}
	msgs := make([]*worker.Message, len(out.Messages))
	for i, m := range out.Messages {
		msgs[i] = worker.Received(m)
	}
	return msgs
}

func bodies(msgs []*worker.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = string(m.Body)
	}
	return out
}

// TestBatchSettlesEachMessageAsTheConsumerDoes: in one batch, a message
// that succeeds is done; a permanent failure is dead-lettered with the
// runtime's attributes and done; a transient failure and a panic are
// failed, each with its retry scheduled. The Batch deletes nothing: that
// is its receiver's.
func TestBatchSettlesEachMessageAsTheConsumerDoes(t *testing.T) {
	t.Parallel()
	h := worker.HandlerFunc(func(_ context.Context, m *worker.Message) error {
		switch string(m.Body) {
		case "bad":
			return worker.Permanent("invalid_field", errors.New("quantity 0"))
		case "blip":
			return errors.New("serialization failure")
		case "panic":
			panic("boom")
		}
		return nil
	})
	r := newBatch(t, h, worker.BatchConfig{})
	msgs := r.receive("ok", "bad", "blip", "panic")
	failed := r.b.Process(context.Background(), msgs)
	if diff := cmp.Diff([]string{"blip", "panic"}, bodies(failed)); diff != "" {
		t.Errorf("failed (-want +got):\n%s", diff)
	}
	dlq := r.sqs.Messages(dlqURL)
	if len(dlq) != 1 || dlq[0].Body != "bad" || aws.ToString(dlq[0].Attributes[worker.AttrDLQReason].StringValue) != "invalid_field" ||
		aws.ToString(dlq[0].Attributes[worker.AttrDLQSourceQueue].StringValue) != srcURL {
		t.Errorf("DLQ = %+v, want the bad message with its reason and source queue", dlq)
	}
	var delayed []time.Duration
	for _, c := range r.sqs.Calls(sqsfake.OpChangeVisibility) {
		in, _ := c.In.(*sqs.ChangeMessageVisibilityInput)
		delayed = append(delayed, time.Duration(in.VisibilityTimeout)*time.Second)
	}
	if diff := cmp.Diff([]time.Duration{policyDelay, policyDelay}, delayed); diff != "" {
		t.Errorf("retries scheduled (-want +got):\n%s", diff)
	}
	if n := len(r.sqs.Calls(sqsfake.OpDeleteBatch)); n != 0 {
		t.Errorf("the batch deleted messages (%d calls): that is the receiver's", n)
	}
}

// TestBatchStartsNothingNearTheDeadline: with one message at a time, the
// first handler runs until it is cut SettleMargin before the invocation's
// deadline (then retried); the second is never started: it is handed back
// at once and failed.
func TestBatchStartsNothingNearTheDeadline(t *testing.T) {
	t.Parallel()
	const settle, startMargin = 300 * time.Millisecond, 600 * time.Millisecond
	var handled atomic.Int32
	cut := make(chan time.Duration, 2)
	h := worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		handled.Add(1)
		deadline, _ := ctx.Deadline()
		<-ctx.Done()
		cut <- time.Until(deadline)
		return ctx.Err()
	})
	r := newBatch(t, h, worker.BatchConfig{Config: worker.Config{MaxInFlight: 1}, StartMargin: startMargin, SettleMargin: settle})
	msgs := r.receive("slow", "never")
	ctx, cancel := context.WithTimeout(context.Background(), startMargin+200*time.Millisecond)
	defer cancel()
	invocationDeadline, _ := ctx.Deadline()
	failed := r.b.Process(ctx, msgs)
	if diff := cmp.Diff([]string{"slow", "never"}, bodies(failed)); diff != "" {
		t.Errorf("failed (-want +got):\n%s", diff)
	}
	if n := handled.Load(); n != 1 {
		t.Errorf("handled %d messages, want 1 (the second must not start)", n)
	}
	if left := time.Until(invocationDeadline); left < settle/2 {
		t.Errorf("Process returned %s before the deadline, want about %s (the settle margin)", left, settle)
	}
	var changes []visibilityChange
	for _, c := range r.sqs.Calls(sqsfake.OpChangeVisibility, sqsfake.OpChangeVisibilityBatch) {
		switch in := c.In.(type) {
		case *sqs.ChangeMessageVisibilityInput:
			changes = append(changes, visibilityChange{aws.ToString(in.ReceiptHandle), time.Duration(in.VisibilityTimeout) * time.Second, false})
		case *sqs.ChangeMessageVisibilityBatchInput:
			for _, e := range in.Entries {
				changes = append(changes, visibilityChange{aws.ToString(e.ReceiptHandle), time.Duration(e.VisibilityTimeout) * time.Second, true})
			}
		}
	}
	want := []visibilityChange{{msgs[0].ReceiptHandle(), policyDelay, false}, {msgs[1].ReceiptHandle(), 0, true}}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("visibility changes (-want +got):\n%s", diff)
	}
	if len(r.logs.find("invocation near its deadline")) != 1 {
		t.Error("no log line says messages were handed back near the deadline")
	}
}

// closedGate never opens: a dependency's breaker stays open.
type closedGate struct{}

func (closedGate) Wait(ctx context.Context) error {
	<-ctx.Done()
	return ctx.Err()
}

// TestBatchFailsFastWhileTheGateIsClosed: with a breaker open, the batch
// waits GateWait, then fails every message without running the handler,
// each delayed by the redelivery policy (one receive per delay, not per
// invocation).
func TestBatchFailsFastWhileTheGateIsClosed(t *testing.T) {
	t.Parallel()
	var handled atomic.Int32
	h := worker.HandlerFunc(func(context.Context, *worker.Message) error { handled.Add(1); return nil })
	const wait = 50 * time.Millisecond
	r := newBatch(t, h, worker.BatchConfig{Config: worker.Config{Gate: closedGate{}}, GateWait: wait})
	msgs := r.receive("a", "b", "c")
	start := time.Now()
	failed := r.b.Process(context.Background(), msgs)
	took := time.Since(start)
	if len(failed) != 3 || handled.Load() != 0 {
		t.Errorf("failed %d of 3, handled %d; want 3 failed, none handled", len(failed), handled.Load())
	}
	if took < wait || took > bound {
		t.Errorf("Process took %s, want the gate's wait (%s) and little more", took, wait)
	}
	calls := r.sqs.Calls(sqsfake.OpChangeVisibilityBatch)
	if len(calls) != 1 {
		t.Fatalf("%d ChangeMessageVisibilityBatch calls, want 1", len(calls))
	}
	in, _ := calls[0].In.(*sqs.ChangeMessageVisibilityBatchInput)
	var got []time.Duration
	for _, e := range in.Entries {
		got = append(got, time.Duration(e.VisibilityTimeout)*time.Second)
	}
	if !slices.Equal(got, []time.Duration{policyDelay, policyDelay, policyDelay}) {
		t.Errorf("delays %v, want the policy's %s for each", got, policyDelay)
	}
}

// TestNewBatchRefusesMarginsThatLeaveNoTime: the handler's cut must come
// after the last start.
func TestNewBatchRefusesMarginsThatLeaveNoTime(t *testing.T) {
	t.Parallel()
	_, err := worker.NewBatch(newFake(), worker.HandlerFunc(func(context.Context, *worker.Message) error { return nil }),
		worker.BatchConfig{Config: worker.Config{Name: "t", QueueURL: srcURL, DLQURL: dlqURL}, StartMargin: time.Second, SettleMargin: time.Second})
	if err == nil {
		t.Fatal("NewBatch accepted SettleMargin = StartMargin")
	}
}

// TestDetachedWorkEndsWithinTheInvocation: a handler's detached work (the
// record of an email already sent) outlives the handler's cut, but in a
// Batch not the invocation: it ends half the settle margin before the
// deadline. Outside a Batch it has no deadline of its own.
func TestDetachedWorkEndsWithinTheInvocation(t *testing.T) {
	t.Parallel()
	const settle = 400 * time.Millisecond
	limits := make(chan time.Time, 1)
	h := worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		dctx, cancel := worker.Detached(ctx)
		defer cancel()
		<-ctx.Done() // the handler's cut
		if dctx.Err() != nil {
			return errors.New("the detached context ended with the handler's")
		}
		limit, ok := dctx.Deadline()
		if !ok {
			return errors.New("the detached context has no deadline in a Batch")
		}
		limits <- limit
		<-dctx.Done()
		return nil
	})
	r := newBatch(t, h, worker.BatchConfig{StartMargin: 2 * settle, SettleMargin: settle})
	ctx, cancel := context.WithTimeout(context.Background(), 3*settle)
	defer cancel()
	deadline, _ := ctx.Deadline()
	failed := r.b.Process(ctx, r.receive("late record"))
	if len(failed) != 0 {
		t.Errorf("failed %v, want the message done", bodies(failed))
	}
	select {
	case limit := <-limits:
		if want := deadline.Add(-settle / 2); !limit.Equal(want) {
			t.Errorf("detached work ends %s before the deadline, want %s", deadline.Sub(limit), settle/2)
		}
	default:
		t.Error("the handler saw no detached deadline")
	}
	if time.Now().After(deadline) {
		t.Error("Process returned after the invocation's deadline")
	}
	dctx, stop := worker.Detached(context.Background())
	defer stop()
	if _, ok := dctx.Deadline(); ok {
		t.Error("outside a Batch the detached context has a deadline")
	}
}
