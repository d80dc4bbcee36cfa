package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// A Batch runs a Handler over messages someone else received — an AWS
// Lambda event source mapping hands a function a batch — and settles each
// exactly as a Consumer does (the same process: dead-lettering with the
// same attributes, retries scheduled with ChangeMessageVisibility, panics
// recovered), except the delete: the receiver owns it. Process says which
// messages are done (handled, or dead-lettered: the receiver deletes them)
// and which failed (the receiver leaves them; each comes back when the
// visibility Process gave it runs out).
//
// The batch lives inside one invocation with a deadline (the context's):
//
//	before any message   the Gate (the dependencies' breakers) is waited
//	                     on for at most GateWait; still closed, the whole
//	                     batch fails at once, each message delayed by the
//	                     redelivery policy, without running the handler
//	each message         started only with at least StartMargin left;
//	                     its handler is cut SettleMargin before the
//	                     deadline (a timeout: retried), so that its
//	                     settlement (a DLQ copy, a retry's delay) has time
//	not started          handed back at once (visibility 0) and failed:
//	                     never half-done
type Batch struct {
	c   *Consumer
	cfg BatchConfig
}

// BatchConfig configures a Batch.
type BatchConfig struct {
	// Config is the consumer's: Name, QueueURL, DLQURL, VisibilityTimeout
	// (the queue's), HandlerTimeout, Redelivery, Gate, Logger, Observer,
	// the dead-letter attributes and TracerProvider mean what they mean for
	// a Consumer; MaxInFlight bounds the messages of one batch handled at
	// once. WaitTime and ShutdownTimeout are not used.
	Config

	// StartMargin: a message is not started with less than this left
	// before the context's deadline. Defaults to StartMarginDefault.
	StartMargin time.Duration
	// SettleMargin: a message's handler is cut this long before the
	// context's deadline, to leave its settlement time. Defaults to
	// SettleMarginDefault; less than StartMargin.
	SettleMargin time.Duration
	// GateWait bounds the wait for the Gate before the batch is failed.
	// Defaults to GateWaitDefault.
	GateWait time.Duration
}

// BatchConfig defaults.
const (
	StartMarginDefault  = 5 * time.Second
	SettleMarginDefault = 2 * time.Second
	GateWaitDefault     = time.Second
)

// NewBatch returns a Batch that runs h on messages of cfg.QueueURL.
func NewBatch(client SQSAPI, h Handler, cfg BatchConfig) (*Batch, error) {
	cfg.StartMargin = cmpOr(cfg.StartMargin, StartMarginDefault)
	cfg.SettleMargin = cmpOr(cfg.SettleMargin, SettleMarginDefault)
	cfg.GateWait = cmpOr(cfg.GateWait, GateWaitDefault)
	if cfg.SettleMargin >= cfg.StartMargin {
		return nil, fmt.Errorf("worker: BatchConfig.SettleMargin (%s) must be shorter than StartMargin (%s)", cfg.SettleMargin, cfg.StartMargin)
	}
	c, err := New(client, h, cfg.Config)
	if err != nil {
		return nil, err
	}
	c.deleter = nil // the receiver deletes
	cfg.Config = c.cfg
	return &Batch{c: c, cfg: cfg}, nil
}

func cmpOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Received is the Message of a delivery received elsewhere (an event
// source mapping's record, turned back into SQS's shape), as a Consumer's
// receive would have built it.
func Received(m sqstypes.Message) *Message { return fromSQS(m) }

// ack settles m as done: its receipt is queued for the batch delete, or, in
// a Batch, whose receiver deletes, m is recorded as done.
func (c *Consumer) ack(m *Message) {
	if c.onDone != nil {
		c.onDone(m)
		return
	}
	c.deleter.add(m.receipt)
}

// Process handles msgs and returns those that failed, in their order; the
// others are done. It returns when every message is settled.
func (b *Batch) Process(ctx context.Context, msgs []*Message) []*Message {
	if len(msgs) == 0 {
		return nil
	}
	b.cfg.Observer.Received(len(msgs))
	if err := b.waitGate(ctx); err != nil {
		b.holdBack(ctx, msgs, err)
		return msgs
	}
	ctx = b.withDetachLimit(ctx)
	var mu sync.Mutex
	done := make(map[*Message]bool, len(msgs))
	c := *b.c // this invocation's: its done messages are recorded here
	c.onDone = func(m *Message) { mu.Lock(); done[m] = true; mu.Unlock() }

	var wg sync.WaitGroup
	slots := make(chan struct{}, b.cfg.MaxInFlight)
	started := b.start(ctx, msgs, slots, func(m *Message, handlerTimeout time.Duration) {
		wg.Go(func() {
			defer func() { <-slots }()
			mc := c // this message's: its handler timeout is its own
			mc.cfg.HandlerTimeout = handlerTimeout
			mc.process(ctx, m)
		})
	})
	wg.Wait()
	if rest := msgs[started:]; len(rest) > 0 {
		b.handBack(ctx, rest)
	}
	var failed []*Message
	for _, m := range msgs {
		if !done[m] {
			failed = append(failed, m)
		}
	}
	return failed
}

// start starts msgs in order, each when a slot is free, while the deadline
// leaves StartMargin; it returns how many it started.
func (b *Batch) start(ctx context.Context, msgs []*Message, slots chan struct{}, run func(*Message, time.Duration)) int {
	startBy, bounded := b.startBy(ctx)
	var timer <-chan time.Time
	if bounded {
		t := time.NewTimer(time.Until(startBy))
		defer t.Stop()
		timer = t.C
	}
	for i, m := range msgs {
		select {
		case slots <- struct{}{}:
		case <-timer:
			return i
		case <-ctx.Done():
			return i
		}
		ht := b.cfg.HandlerTimeout
		if deadline, ok := ctx.Deadline(); ok {
			left := time.Until(deadline)
			if left < b.cfg.StartMargin {
				<-slots
				return i
			}
			ht = min(ht, left-b.cfg.SettleMargin)
		}
		run(m, ht)
	}
	return len(msgs)
}

// startBy is the last moment a message may start: StartMargin before the
// context's deadline, if it has one.
func (b *Batch) startBy(ctx context.Context) (time.Time, bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		return time.Time{}, false
	}
	return deadline.Add(-b.cfg.StartMargin), true
}

// detachLimitKey carries the limit of a handler's detached work (Detached).
type detachLimitKey struct{}

// withDetachLimit bounds the detached work of the batch's handlers: it ends
// half the SettleMargin before the invocation's deadline, after the
// handlers' own cut (SettleMargin before it), so that a handler that
// finishes work past its cut (recording an email already sent) still
// leaves its settlement time within the invocation.
func (b *Batch) withDetachLimit(ctx context.Context) context.Context {
	deadline, ok := ctx.Deadline()
	if !ok {
		return ctx
	}
	return context.WithValue(ctx, detachLimitKey{}, deadline.Add(-b.cfg.SettleMargin/2))
}

// Detached returns a context for work a handler must finish even when its
// own context is cancelled (the bookkeeping of an effect already done): it
// keeps ctx's values but not its cancellation nor its deadline. In a
// Consumer it is unbounded (the caller adds its own timeout); in a Batch it
// ends before the invocation's deadline, which no work outlives (a Lambda
// environment is frozen or reset then), leaving the message its
// settlement. Call cancel when done.
func Detached(ctx context.Context) (context.Context, context.CancelFunc) {
	dctx := context.WithoutCancel(ctx)
	if limit, ok := ctx.Value(detachLimitKey{}).(time.Time); ok {
		return context.WithDeadline(dctx, limit)
	}
	return context.WithCancel(dctx)
}

// errDeadline is why messages were not started.
var errDeadline = errors.New("worker: the invocation is near its deadline")

// waitGate waits for the Gate for at most GateWait (and never past the
// moment a message could still start).
func (b *Batch) waitGate(ctx context.Context) error {
	if b.cfg.Gate == nil {
		return nil
	}
	wait := b.cfg.GateWait
	if startBy, ok := b.startBy(ctx); ok {
		wait = min(wait, time.Until(startBy))
	}
	gctx, cancel := context.WithTimeoutCause(ctx, max(wait, 0), errDeadline)
	defer cancel()
	if err := b.cfg.Gate.Wait(gctx); err != nil {
		return fmt.Errorf("a dependency is unavailable (its circuit breaker is open) after waiting %s: %w", wait, err)
	}
	return nil
}

// holdBack fails a batch the gate did not let through: each message comes
// back after the redelivery policy's delay for its receive count, so that
// an outage costs each message one receive per delay, not one per
// invocation.
func (b *Batch) holdBack(ctx context.Context, msgs []*Message, cause error) {
	delays := make([]time.Duration, len(msgs))
	for i, m := range msgs {
		delays[i] = min(max(b.cfg.Redelivery.NextDelay(m.ReceiveCount), 0), maxVisibility)
		b.cfg.Observer.Retried()
	}
	b.c.log.Warn("failing the batch without handling it; its messages come back after their delay",
		"err", cause, "messages", len(msgs), "first_delay", delays[0].Round(time.Millisecond).String())
	if err := b.changeVisibility(ctx, msgs, delays); err != nil {
		b.c.log.Error("delaying the batch failed; its messages return after their visibility timeout", "err", err)
	}
}

// handBack makes messages that were not started visible again at once.
func (b *Batch) handBack(ctx context.Context, msgs []*Message) {
	b.c.log.Warn("invocation near its deadline: messages not started are handed back",
		"messages", len(msgs), "start_margin", b.cfg.StartMargin.String())
	if err := b.changeVisibility(ctx, msgs, make([]time.Duration, len(msgs))); err != nil {
		b.c.log.Error("handing back failed; the messages return after their visibility timeout", "err", err)
		return
	}
	b.cfg.Observer.Released(len(msgs))
}

// changeVisibility sets each message's visibility in batches of ten, each
// call within settleTimeout; it does not inherit ctx's cancellation (the
// invocation may be ending) but stays within its deadline.
func (b *Batch) changeVisibility(ctx context.Context, msgs []*Message, delays []time.Duration) error {
	var errs []error
	for from := 0; from < len(msgs); from += maxReceiveBatch {
		to := min(from+maxReceiveBatch, len(msgs))
		entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, 0, to-from)
		for i := from; i < to; i++ {
			entries = append(entries, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
				Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(msgs[i].receipt),
				VisibilityTimeout: int32(delays[i] / time.Second), //nolint:gosec // G115: delays are clamped to maxVisibility (12h)
			})
		}
		if err := b.changeBatch(ctx, entries); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (b *Batch) changeBatch(ctx context.Context, entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry) error {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	if deadline, ok := ctx.Deadline(); ok {
		var cancelDeadline context.CancelFunc
		cctx, cancelDeadline = context.WithDeadline(cctx, deadline)
		defer cancelDeadline()
	}
	out, err := b.c.client.ChangeMessageVisibilityBatch(cctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(b.cfg.QueueURL), Entries: entries})
	if err != nil {
		return fmt.Errorf("change the visibility of %d messages: %w", len(entries), err)
	}
	if len(out.Failed) > 0 {
		return fmt.Errorf("change the visibility of %d messages: %d failed (%s)", len(entries), len(out.Failed), aws.ToString(out.Failed[0].Code))
	}
	return nil
}

// Logger is the batch's logger (with the handler's name), for the code that
// runs it to log alongside.
func (b *Batch) Logger() *slog.Logger { return b.c.log }
