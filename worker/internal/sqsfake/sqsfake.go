// Package sqsfake is an in-memory stand-in for the part of SQS the worker
// runtime uses (worker.SQSAPI), for the runtime's unit tests.
//
// It models what the runtime relies on: receives that take up to
// MaxNumberOfMessages visible messages, hide them for the visibility timeout,
// count receives and hand out a new receipt handle each time; long polling;
// DeleteMessageBatch and ChangeMessageVisibility(Batch) with SQS's per-entry
// results (an unknown receipt fails with ReceiptHandleIsInvalid; a stale one
// deletes nothing but succeeds, as SQS does); SendMessage with SQS's checks
// (ten attributes at most, non-empty values, the allowed characters, valid
// UTF-8, 256 KiB in all). Every call is recorded; tests wait on Changed
// rather than sleep. Faults are injected per operation: FailNext, Intercept
// (which may block), FailEntries.
package sqsfake

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// Op names an SQS operation.
type Op string

// The operations the fake serves.
const (
	OpReceive               Op = "ReceiveMessage"
	OpDeleteBatch           Op = "DeleteMessageBatch"
	OpChangeVisibility      Op = "ChangeMessageVisibility"
	OpChangeVisibilityBatch Op = "ChangeMessageVisibilityBatch"
	OpSend                  Op = "SendMessage"
)

// Call is one recorded call.
type Call struct {
	Op  Op
	In  any // the input as passed (*sqs.ReceiveMessageInput, ...)
	Out any // the output returned, nil on error
	Err error
}

// Message is a message as the fake holds it.
type Message struct {
	ID           string
	Body         string
	Attributes   map[string]sqstypes.MessageAttributeValue
	ReceiveCount int
	Receipt      string // of the latest receive
	Deleted      bool
	SentAt       time.Time
	VisibleAt    time.Time // zero: visible
}

// Fake is an in-memory SQS. Create queues with AddQueue; the zero value is
// not usable.
type Fake struct {
	// MaxLongPoll, if positive, caps a receive's long poll (SQS may return
	// early too), so tests need not wait out WaitTimeSeconds.
	MaxLongPoll time.Duration

	mu        sync.Mutex
	queues    map[string]*queue
	calls     []Call
	changed   chan struct{}
	seq       int
	failNext  map[Op][]error
	intercept map[Op]func(ctx context.Context, in any) error
	entryFail func(op Op, receipt string) string
}

type queue struct {
	visibility time.Duration
	msgs       []*Message
	receipts   map[string]*Message // every receipt handed out
}

// New returns an empty fake.
func New() *Fake {
	return &Fake{queues: map[string]*queue{}, changed: make(chan struct{}),
		failNext: map[Op][]error{}, intercept: map[Op]func(context.Context, any) error{}}
}

// AddQueue creates the queue url with a default visibility timeout.
func (f *Fake) AddQueue(url string, visibility time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queues[url] = &queue{visibility: visibility, receipts: map[string]*Message{}}
}

// Put adds m to the queue as it is, without SendMessage's checks (to stage
// messages SQS would have let through, or would not have), and returns its id.
func (f *Fake) Put(url string, m Message) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := f.queues[url]
	if q == nil {
		panic("sqsfake: no queue " + url)
	}
	f.seq++
	if m.ID == "" {
		m.ID = "m" + strconv.Itoa(f.seq)
	}
	if m.SentAt.IsZero() {
		m.SentAt = time.Now()
	}
	m.Attributes = maps.Clone(m.Attributes)
	q.msgs = append(q.msgs, &m)
	f.notifyLocked()
	return m.ID
}

// Messages returns copies of the queue's messages, deleted ones included.
func (f *Fake) Messages(url string) []Message {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Message
	if q := f.queues[url]; q != nil {
		for _, m := range q.msgs {
			out = append(out, *m)
		}
	}
	return out
}

// Message returns a copy of the message id in url.
func (f *Fake) Message(url, id string) (Message, bool) {
	for _, m := range f.Messages(url) {
		if m.ID == id {
			return m, true
		}
	}
	return Message{}, false
}

// Calls returns the recorded calls of the given operations (all if none), in
// the order they returned.
func (f *Fake) Calls(ops ...Op) []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Call
	for _, c := range f.calls {
		if len(ops) == 0 || slices.Contains(ops, c.Op) {
			out = append(out, c)
		}
	}
	return out
}

// Changed returns a channel closed at the next change: a call returning, a
// message put.
func (f *Fake) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// FailNext makes the next len(errs) calls of op fail with errs, in order,
// without effect.
func (f *Fake) FailNext(op Op, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext[op] = append(f.failNext[op], errs...)
}

// Intercept runs fn at the start of every call of op, with the call's
// context and input; if fn returns an error the call fails with it, without
// effect. fn may block (honouring ctx is up to it). A nil fn removes it.
func (f *Fake) Intercept(op Op, fn func(ctx context.Context, in any) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fn == nil {
		delete(f.intercept, op)
		return
	}
	f.intercept[op] = fn
}

// FailEntries sets fn to decide, for each entry of DeleteMessageBatch and
// ChangeMessageVisibilityBatch, an error code to fail it with ("" to let it
// through).
func (f *Fake) FailEntries(fn func(op Op, receipt string) (code string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.entryFail = fn
}

func (f *Fake) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// before fails a call whose context has ended, as the SDK does, then runs
// the injected faults of op.
func (f *Fake) before(ctx context.Context, op Op, in any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("operation error SQS: %s: %w", op, err)
	}
	f.mu.Lock()
	fn := f.intercept[op]
	var err error
	if errs := f.failNext[op]; len(errs) > 0 {
		err, f.failNext[op] = errs[0], errs[1:]
	}
	f.mu.Unlock()
	if err != nil {
		return err
	}
	if fn != nil {
		return fn(ctx, in)
	}
	return nil
}

func (f *Fake) record(op Op, in, out any, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil {
		out = nil
	}
	f.calls = append(f.calls, Call{Op: op, In: in, Out: out, Err: err})
	f.notifyLocked()
}

// queueLocked returns the queue url, or SQS's error for a missing one.
func (f *Fake) queueLocked(url *string) (*queue, error) {
	if q := f.queues[aws.ToString(url)]; q != nil {
		return q, nil
	}
	return nil, &sqstypes.QueueDoesNotExist{Message: aws.String("The specified queue does not exist.")}
}

func invalidParameter(format string, args ...any) error {
	return &smithy.GenericAPIError{Code: "InvalidParameterValue", Message: fmt.Sprintf(format, args...), Fault: smithy.FaultClient}
}

func seconds(d int32) time.Duration { return time.Duration(d) * time.Second }

// inFlight reports whether m, received with receipt, is invisible now.
func inFlight(m *Message, receipt string, now time.Time) bool {
	return !m.Deleted && m.Receipt == receipt && now.Before(m.VisibleAt)
}
