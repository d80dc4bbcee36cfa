package worker_test

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

// The queues of the unit tests, in the fake.
const (
	srcURL = "https://sqs.us-east-1.amazonaws.com/000000000000/orders"
	dlqURL = "https://sqs.us-east-1.amazonaws.com/000000000000/orders-dlq"
	// visibility is the queue's visibility timeout: the least Validate allows.
	visibility = 2 * time.Second
	// policyDelay is what fixedRetry asks for, so assertions can name it.
	policyDelay = 7 * time.Second
	// bound caps every wait of these tests.
	bound = 5 * time.Second
	// watch is how long a test watches for something that must not happen.
	watch = 100 * time.Millisecond
)

// fixedRetry is a RedeliveryPolicy with one delay.
type fixedRetry time.Duration

func (r fixedRetry) NextDelay(int) time.Duration { return time.Duration(r) }

// newFake returns a fake SQS holding the source queue and its DLQ. Its long
// polls last at most 20ms, so an idle consumer stops at once.
func newFake() *sqsfake.Fake {
	f := sqsfake.New()
	f.MaxLongPoll = 20 * time.Millisecond
	f.AddQueue(srcURL, visibility)
	f.AddQueue(dlqURL, visibility)
	return f
}

// rig is a Consumer running on a fake SQS.
type rig struct {
	t        *testing.T
	sqs      *sqsfake.Fake
	logs     *logRecorder
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
}

// start runs a Consumer of srcURL until the test ends or stop is called.
// Unset fields of cfg get test values: WaitTime 1s, VisibilityTimeout 2s,
// RedeliveryPolicy fixedRetry(policyDelay).
func start(t *testing.T, f *sqsfake.Fake, h worker.Handler, cfg worker.Config) *rig {
	t.Helper()
	logs := &logRecorder{state: &logState{changed: make(chan struct{})}}
	cfg.Name, cfg.QueueURL, cfg.DLQURL, cfg.Logger = "test", srcURL, dlqURL, slog.New(logs)
	if cfg.WaitTime == 0 {
		cfg.WaitTime = time.Second
	}
	if cfg.VisibilityTimeout == 0 {
		cfg.VisibilityTimeout = visibility
	}
	if cfg.Redelivery == nil {
		cfg.Redelivery = fixedRetry(policyDelay)
	}
	c, err := worker.New(f, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &rig{t: t, sqs: f, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() {
		r.stop()
		if t.Failed() {
			for _, rec := range logs.records() {
				t.Logf("log: %s %s %v", rec.Level, rec.Msg, rec.Attrs)
			}
		}
	})
	return r
}

// stop cancels Run's context and waits, bounded, for Run to return.
func (r *rig) stop() {
	r.t.Helper()
	r.stopOnce.Do(func() {
		r.cancel()
		select {
		case err := <-r.done:
			if err != nil {
				r.t.Errorf("Run: %v", err)
			}
		case <-time.After(bound):
			r.t.Errorf("Run did not return within %s of its context's cancellation", bound)
		}
	})
}

// put adds a message with body to the source queue and returns its id.
func (r *rig) put(body string, attrs map[string]sqstypes.MessageAttributeValue) string {
	return r.sqs.Put(srcURL, sqsfake.Message{Body: body, Attributes: attrs})
}

// eventually waits until cond holds, waking on every change of the fake or
// the logs and every few milliseconds (for conditions on handler state), and
// fails the test after bound.
func (r *rig) eventually(what string, cond func() bool) {
	r.t.Helper()
	if !waitUntil(context.Background(), r.sqs, r.logs, bound, cond) {
		r.t.Fatalf("after %s: still not %s", bound, what)
	}
}

// waitUntil is eventually for handlers, which may not call t.Fatal, and for
// watching that something does not happen: it reports whether cond came to
// hold within timeout (and before ctx ended).
func waitUntil(ctx context.Context, f *sqsfake.Fake, logs *logRecorder, timeout time.Duration, cond func() bool) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		var fakeChanged, logsChanged <-chan struct{}
		if f != nil {
			fakeChanged = f.Changed()
		}
		if logs != nil {
			logsChanged = logs.Changed()
		}
		if cond() {
			return true
		}
		select {
		case <-fakeChanged:
		case <-logsChanged:
		case <-tick.C:
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		}
	}
}

// deleted reports whether the message id is gone from the source queue.
func (r *rig) deleted(id string) bool {
	m, ok := r.sqs.Message(srcURL, id)
	return ok && m.Deleted
}

// message returns the source queue's message id.
func (r *rig) message(id string) sqsfake.Message {
	r.t.Helper()
	m, ok := r.sqs.Message(srcURL, id)
	if !ok {
		r.t.Fatalf("no message %s", id)
	}
	return m
}

// visibilityChange is one ChangeMessageVisibility, batched or not.
type visibilityChange struct {
	Receipt string
	Timeout time.Duration
	Batch   bool
}

// visibilityChanges returns the visibility changes made, successful or not.
func (r *rig) visibilityChanges() []visibilityChange {
	var out []visibilityChange
	for _, c := range r.sqs.Calls(sqsfake.OpChangeVisibility, sqsfake.OpChangeVisibilityBatch) {
		switch in := c.In.(type) {
		case *sqs.ChangeMessageVisibilityInput:
			out = append(out, visibilityChange{aws.ToString(in.ReceiptHandle), time.Duration(in.VisibilityTimeout) * time.Second, false})
		case *sqs.ChangeMessageVisibilityBatchInput:
			for _, e := range in.Entries {
				out = append(out, visibilityChange{aws.ToString(e.ReceiptHandle), time.Duration(e.VisibilityTimeout) * time.Second, true})
			}
		}
	}
	return out
}

// deleteBatches returns the receipts of each DeleteMessageBatch call.
func (r *rig) deleteBatches() [][]string {
	var out [][]string
	for _, c := range r.sqs.Calls(sqsfake.OpDeleteBatch) {
		in, ok := c.In.(*sqs.DeleteMessageBatchInput)
		if !ok {
			continue // not a batch delete: Calls filtered by op
		}
		var receipts []string
		for _, e := range in.Entries {
			receipts = append(receipts, aws.ToString(e.ReceiptHandle))
		}
		out = append(out, receipts)
	}
	return out
}

// deleteAttempts counts the delete entries naming receipt.
func (r *rig) deleteAttempts(receipt string) int {
	n := 0
	for _, b := range r.deleteBatches() {
		n += len(slices.DeleteFunc(b, func(s string) bool { return s != receipt }))
	}
	return n
}

// dlq returns the messages in the DLQ.
func (r *rig) dlq() []sqsfake.Message { return r.sqs.Messages(dlqURL) }

// receipts records the receipt handle each message was handled with.
type receipts struct {
	mu sync.Mutex
	m  map[string]string // message id → receipt
}

func (rs *receipts) record(m *worker.Message) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.m == nil {
		rs.m = map[string]string{}
	}
	rs.m[m.ID] = m.ReceiptHandle()
}

func (rs *receipts) of(id string) string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.m[id]
}

// logRecorder is a slog.Handler that keeps what the runtime logs.
type logRecorder struct {
	state *logState
	attrs []slog.Attr
}

type logState struct {
	mu      sync.Mutex
	recs    []logRecord
	changed chan struct{}
}

type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range l.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { rec.Attrs[a.Key] = a.Value.String(); return true })
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	l.state.recs = append(l.state.recs, rec)
	close(l.state.changed)
	l.state.changed = make(chan struct{})
	return nil
}

func (l *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &logRecorder{state: l.state, attrs: append(slices.Clip(l.attrs), as...)}
}

func (l *logRecorder) WithGroup(string) slog.Handler { return l }

// Changed returns a channel closed at the next record.
func (l *logRecorder) Changed() <-chan struct{} {
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	return l.state.changed
}

func (l *logRecorder) records() []logRecord {
	l.state.mu.Lock()
	defer l.state.mu.Unlock()
	return slices.Clone(l.state.recs)
}

// find returns the records whose message starts with prefix.
func (l *logRecorder) find(prefix string) []logRecord {
	return slices.DeleteFunc(l.records(), func(r logRecord) bool { return !strings.HasPrefix(r.Msg, prefix) })
}
