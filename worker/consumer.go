package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/internal/tick"
)

// SQSAPI is the part of the SQS client the runtime uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
}

// Config configures a Consumer.
type Config struct {
	// Name labels logs (the handler's name). Required.
	Name string
	// QueueURL is the queue to consume. Required.
	QueueURL string
	// DLQURL receives messages whose handler returned a Permanent error. Required.
	DLQURL string
	// MaxInFlight bounds the messages received and not yet finished. Defaults to 20.
	MaxInFlight int
	// WaitTime is the long-polling wait of a receive. Defaults to 20s.
	WaitTime time.Duration
	// VisibilityTimeout must equal the queue's; the heartbeat extends a
	// message by this much while its handler runs. Defaults to 30s.
	VisibilityTimeout time.Duration
	// HandlerTimeout bounds one handler call. Defaults to 2m.
	HandlerTimeout time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight handlers after
	// its context is cancelled. Defaults to 25s (under ECS's default 30s stopTimeout).
	ShutdownTimeout time.Duration
	// Redelivery schedules redeliveries of failed messages. Defaults to ExponentialRedelivery{}.
	Redelivery RedeliveryPolicy
	// Gate, if set, is waited on before every receive: while a dependency
	// the handler needs is down (its circuit breaker open), the consumer
	// receives nothing, so messages wait in the queue instead of burning
	// receives on their way to the DLQ.
	Gate Gate
	// DeadLetterKeepAttributes names the incoming message attributes a
	// dead-lettered copy keeps first, in this order, when the message has
	// more than fit beside the runtime's reason attributes (SQS allows
	// ten); the others are kept by name, and the rest folded into
	// AttrDLQDroppedAttributes. The product lists what it relies on
	// (event_type, schema_version, traceparent). Defaults to none.
	DeadLetterKeepAttributes []string
	// Logger receives the runtime's logs. Defaults to slog.Default().
	Logger *slog.Logger
	// Observer hears every message's fate, for metrics. Defaults to
	// NopObserver.
	Observer Observer
	// DLQAttributePrefix prefixes the attributes that say why a message was
	// dead-lettered (reason, error, source_queue, receive_count,
	// dropped_attributes). Defaults to DLQAttributePrefixDefault.
	DLQAttributePrefix string
	// TracerProvider, if set, traces every delivery: a consumer span per
	// message, the child of the W3C trace context its attributes carry
	// (see trace.go). Nil (the default): nothing is traced, nothing
	// extracted.
	TracerProvider trace.TracerProvider
}

// Gate holds a consumer's receiving back (backpressure).
type Gate interface {
	// Wait returns when receiving may go on, or ctx's error.
	Wait(ctx context.Context) error
}

// Config defaults.
const (
	MaxInFlightDefault       = 20
	WaitTimeDefault          = 20 * time.Second
	VisibilityTimeoutDefault = 30 * time.Second
	HandlerTimeoutDefault    = 2 * time.Minute
	ShutdownTimeoutDefault   = 25 * time.Second
	maxReceiveBatch          = 10 // the SQS limit
)

func (c *Config) setDefaults() {
	if c.MaxInFlight <= 0 {
		c.MaxInFlight = MaxInFlightDefault
	}
	if c.WaitTime <= 0 {
		c.WaitTime = WaitTimeDefault
	}
	if c.VisibilityTimeout <= 0 {
		c.VisibilityTimeout = VisibilityTimeoutDefault
	}
	if c.HandlerTimeout <= 0 {
		c.HandlerTimeout = HandlerTimeoutDefault
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = ShutdownTimeoutDefault
	}
	if c.Redelivery == nil {
		c.Redelivery = ExponentialRedelivery{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Observer == nil {
		c.Observer = NopObserver{}
	}
	if c.DLQAttributePrefix == "" {
		c.DLQAttributePrefix = DLQAttributePrefixDefault
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("worker: Config.Name is required")
	case c.QueueURL == "":
		return errors.New("worker: Config.QueueURL is required")
	case c.DLQURL == "":
		return errors.New("worker: Config.DLQURL is required")
	case c.WaitTime < time.Second:
		return errors.New("worker: Config.WaitTime must be at least 1s (SQS counts whole seconds; shorter is a busy loop)")
	case c.WaitTime > 20*time.Second:
		return errors.New("worker: Config.WaitTime must be at most 20s (the SQS limit)")
	case c.VisibilityTimeout < 2*time.Second:
		return errors.New("worker: Config.VisibilityTimeout must be at least 2s")
	case c.VisibilityTimeout > maxVisibility:
		return errors.New("worker: Config.VisibilityTimeout must be at most 12h (the SQS limit)")
	}
	return nil
}

// Consumer consumes one queue.
type Consumer struct {
	client    SQSAPI
	handler   Handler
	cfg       Config
	log       *slog.Logger
	deleter   *deleter
	dlqNames  DLQAttributeNames
	tracer    trace.Tracer // nil: tracing off
	queueName string
	onDone    func(*Message) // set in a Batch, whose receiver deletes (batch.go)
}

// New returns a Consumer for cfg.QueueURL that runs h for each message.
func New(client SQSAPI, h Handler, cfg Config) (*Consumer, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("handler", cfg.Name)
	c := &Consumer{
		client: client, handler: h, cfg: cfg, log: log,
		deleter:   newDeleter(client, cfg.QueueURL, log),
		dlqNames:  DLQAttributesFor(cfg.DLQAttributePrefix),
		queueName: queueName(cfg.QueueURL),
	}
	if cfg.TracerProvider != nil {
		c.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return c, nil
}

// Run receives and processes messages until ctx is cancelled, then stops
// receiving, waits up to ShutdownTimeout for in-flight handlers, flushes
// pending deletes and returns. Messages whose handler did not finish are not
// deleted: they come back when their visibility expires.
func (c *Consumer) Run(ctx context.Context) error {
	// Handlers outlive ctx by up to ShutdownTimeout, so they get their own
	// context, cancelled only when that time is up.
	hardCtx, hardStop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer hardStop(nil)
	go c.deleter.run(context.WithoutCancel(ctx))

	var wg sync.WaitGroup
	slots := make(chan struct{}, c.cfg.MaxInFlight)
	c.receiveLoop(ctx, hardCtx, slots, &wg)

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(c.cfg.ShutdownTimeout):
		c.log.Warn("shutdown timeout: cancelling in-flight handlers; their messages will be redelivered")
		hardStop(ErrShutdownTimeout)
		select {
		case <-done:
		case <-time.After(abandonAfter):
			// A handler that ignores its context must not hold the
			// process: its message is not deleted and comes back.
			c.log.Error("in-flight handlers ignored their cancellation; stopping without them", "waited", abandonAfter.String())
		}
	}
	c.deleter.close()
	return nil
}

func (c *Consumer) receiveLoop(ctx, hardCtx context.Context, slots chan struct{}, wg *sync.WaitGroup) {
	failures := 0
	for {
		if c.cfg.Gate != nil {
			if err := c.cfg.Gate.Wait(ctx); err != nil {
				return
			}
		}
		n, ok := acquire(ctx, slots)
		if !ok {
			return
		}
		// A receive is not cut off by shutdown (SQS may already have taken
		// messages for it, which would then sit invisible until their
		// visibility timeout): it gets receiveGrace to come back, and what
		// it brings is handed back at once below.
		rctx, done := afterCancel(ctx, receiveGrace)
		msgs, err := c.receive(rctx, n)
		done()
		release(slots, n-len(msgs))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			failures++
			c.log.Error("receive failed", "err", err, "consecutive_failures", failures)
			if !sleep(ctx, min(time.Duration(failures)*time.Second, 10*time.Second)) {
				return
			}
			continue
		}
		failures = 0
		c.cfg.Observer.Received(len(msgs))
		if ctx.Err() != nil {
			// Shutdown began while these were on their way: hand them back
			// at once for another task instead of starting them.
			c.releaseAll(ctx, msgs)
			release(slots, len(msgs))
			return
		}
		for _, m := range msgs {
			wg.Go(func() {
				defer release(slots, 1)
				c.process(hardCtx, m)
			})
		}
	}
}

// abandonAfter is how long Run waits, after cancelling the handlers at the
// shutdown timeout, for them to return before it returns without them.
const abandonAfter = 5 * time.Second

// receiveSlack is how long a receive may take beyond its long-poll wait
// before it is abandoned as hung.
const receiveSlack = 10 * time.Second

// receiveGrace is how long a receive in progress may still take after
// shutdown began.
const receiveGrace = 2 * time.Second

// afterCancel returns a context that is cancelled grace after ctx is, and a
// func to call when done with it.
func afterCancel(ctx context.Context, grace time.Duration) (context.Context, func()) {
	out, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			t := time.NewTimer(grace)
			defer t.Stop()
			select {
			case <-t.C:
				cancel()
			case <-stop:
			}
		case <-stop:
		}
	}()
	return out, func() { close(stop); cancel() }
}

// releaseAll makes msgs visible again at once (best effort: if this fails
// they return when their visibility times out).
func (c *Consumer) releaseAll(ctx context.Context, msgs []*Message) {
	if len(msgs) == 0 {
		return
	}
	// ctx is the receive loop's, cancelled by now: the hand-back must not inherit that.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(m.receipt), VisibilityTimeout: 0}
	}
	if _, err := c.client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(c.cfg.QueueURL), Entries: entries}); err != nil {
		c.log.Warn("could not hand back messages received during shutdown; they return after their visibility timeout", "err", err, "messages", len(msgs))
		return
	}
	c.cfg.Observer.Released(len(msgs))
	c.log.Info("handed back messages received during shutdown", "messages", len(msgs))
}

// acquire blocks for one free slot, then takes up to a receive batch more.
// When fewer than half the slots (at most a batch) are free at once — the
// consumer is busy — it waits up to receiveLinger for more, so that a busy
// consumer receives fuller batches (every receive is a request SQS bills
// and a round trip) instead of one message per freed slot. An idle
// consumer never waits: all its slots are free. It returns how many it took.
func acquire(ctx context.Context, slots chan struct{}) (int, bool) {
	select {
	case slots <- struct{}{}:
	case <-ctx.Done():
		return 0, false
	}
	n := 1 + take(slots, maxReceiveBatch-1)
	want := min(maxReceiveBatch, cap(slots)/2)
	if n >= want {
		return n, true
	}
	t := time.NewTimer(receiveLinger)
	defer t.Stop()
	for n < want {
		select {
		case slots <- struct{}{}:
			n++
		case <-t.C:
			return n, true
		case <-ctx.Done():
			release(slots, n)
			return 0, false
		}
	}
	return n, true
}

// receiveLinger bounds how long a busy consumer waits for a fuller receive
// batch (acquire).
const receiveLinger = 5 * time.Millisecond

// take takes up to limit free slots without blocking and returns how many.
func take(slots chan struct{}, limit int) int {
	n := 0
	for n < limit {
		select {
		case slots <- struct{}{}:
			n++
		default:
			return n
		}
	}
	return n
}

func release(slots chan struct{}, n int) {
	for range n {
		<-slots
	}
}

func (c *Consumer) receive(ctx context.Context, n int) ([]*Message, error) {
	// A receive that hangs (SQS unreachable without a reset) must not stop
	// the consumer: it ends receiveSlack after its long poll should have.
	ctx, cancel := context.WithTimeout(ctx, c.cfg.WaitTime+receiveSlack)
	defer cancel()
	out, err := c.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(c.cfg.QueueURL),
		MaxNumberOfMessages:         int32(n),                                     //nolint:gosec // G115: acquire takes at most maxReceiveBatch (10)
		WaitTimeSeconds:             int32(c.cfg.WaitTime / time.Second),          //nolint:gosec // G115: Validate bounds WaitTime to 1s..20s
		VisibilityTimeout:           int32(c.cfg.VisibilityTimeout / time.Second), //nolint:gosec // G115: Validate bounds VisibilityTimeout to 2s..12h
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount, sqstypes.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		return nil, fmt.Errorf("receive from %s: %w", c.cfg.QueueURL, err)
	}
	msgs := make([]*Message, 0, len(out.Messages))
	for _, m := range out.Messages {
		msgs = append(msgs, fromSQS(m))
	}
	return msgs, nil
}

func fromSQS(m sqstypes.Message) *Message {
	msg := &Message{
		ID:         aws.ToString(m.MessageId),
		Body:       []byte(aws.ToString(m.Body)),
		Attributes: make(map[string]string, len(m.MessageAttributes)),
		receipt:    aws.ToString(m.ReceiptHandle),
		sqsAttrs:   m.MessageAttributes,
	}
	if msg.sqsAttrs == nil {
		msg.sqsAttrs = map[string]sqstypes.MessageAttributeValue{}
	}
	for k, v := range m.MessageAttributes {
		if v.StringValue != nil {
			msg.Attributes[k] = *v.StringValue
		}
	}
	msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
	if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		msg.SentAt = time.UnixMilli(ms)
	}
	return msg
}

// Causes of a handler context's cancellation, for context.Cause: the handler
// ran out of Config.HandlerTimeout (its message is retried), or shutdown ran
// out of Config.ShutdownTimeout (its message is left to be redelivered, not
// counted as a failure).
var (
	ErrHandlerTimeout  = errors.New("worker: handler timeout")
	ErrShutdownTimeout = errors.New("worker: shutdown timeout")
)

// settleTimeout bounds each call that settles a message after its handler
// returned (the DLQ copy, the retry's visibility change).
const settleTimeout = 10 * time.Second

// process runs the handler and settles the message: delete, dead-letter, or
// schedule a retry.
func (c *Consumer) process(ctx context.Context, m *Message) {
	ctx, span := c.startSpan(ctx, m)
	hctx, cancel := context.WithTimeoutCause(NewContext(ctx, m), c.cfg.HandlerTimeout, ErrHandlerTimeout)
	defer cancel()
	start := time.Now()
	obs := c.cfg.Observer
	obs.InFlight(1)
	defer obs.InFlight(-1)
	stopHeartbeat := c.heartbeat(hctx, m)
	err := c.safeHandle(hctx, m)
	stopHeartbeat()

	if err == nil {
		obs.Processed()
		c.ack(m)
		obs.Settled("ok", time.Since(start))
		endSpan(span, m, "ok", "")
		return
	}
	log := m.logger(c.log) // only now: a logger per message is not free
	sctx, cancelSettle := context.WithTimeout(ctx, settleTimeout)
	defer cancelSettle()
	outcome, spanOutcome, detail := "retry", "retry", ""
	switch reason, permanent := PermanentReason(err); {
	case errors.Is(context.Cause(ctx), ErrShutdownTimeout):
		// Shutdown cut the handler short: not the message's fault, whatever
		// it returned (and ctx can carry no call now). Leave it to be
		// redelivered without counting a failure.
		spanOutcome = "interrupted"
		log.Warn("handler interrupted by shutdown; message will be redelivered", "err", err)
	case permanent:
		outcome, spanOutcome, detail = "dead_letter", "dead_letter", reason
		c.deadLetter(sctx, m, reason, err, log)
	default:
		c.retry(sctx, m, err, log)
	}
	obs.Settled(outcome, time.Since(start))
	endSpan(span, m, spanOutcome, detail)
}

// safeHandle turns a handler panic into an error with the stack, so one bad
// message cannot take the worker down.
func (c *Consumer) safeHandle(ctx context.Context, m *Message) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("handler panic: %v\n%s", r, debug.Stack())
		}
	}()
	return c.handler.Handle(ctx, m)
}

// heartbeat keeps a message invisible while its handler runs longer than half
// the visibility timeout, so a slow handler is not raced by a redelivery.
// Nothing runs for the many messages done sooner (tick.Every).
func (c *Consumer) heartbeat(ctx context.Context, m *Message) (stop func()) {
	hbCtx, cancel := context.WithCancel(ctx)
	stopTicks := tick.Every(c.cfg.VisibilityTimeout/2, func() { c.beat(hbCtx, m) })
	return func() { cancel(); stopTicks() }
}

// beat extends m's visibility once, within settleTimeout: a hung call must
// not hold the next beat back.
func (c *Consumer) beat(ctx context.Context, m *Message) {
	bctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	if err := c.changeVisibility(bctx, m, c.cfg.VisibilityTimeout); err != nil && ctx.Err() == nil {
		m.logger(c.log).Warn("visibility heartbeat failed", "err", err)
	}
}

func (c *Consumer) retry(ctx context.Context, m *Message, cause error, log *slog.Logger) {
	delay := c.cfg.Redelivery.NextDelay(m.ReceiveCount)
	if d, ok := RetryAfterDelay(cause); ok {
		delay = d
	}
	delay = min(max(delay, 0), maxVisibility) // what SQS accepts
	c.cfg.Observer.Retried()
	log.Warn("handler failed; will retry", "err", cause, "retry_in", delay.Round(time.Millisecond).String())
	if err := c.changeVisibility(ctx, m, delay); err != nil {
		log.Error("scheduling retry failed; message returns after its visibility timeout", "err", err)
	}
}

func (c *Consumer) changeVisibility(ctx context.Context, m *Message, d time.Duration) error {
	_, err := c.client.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{
		QueueUrl:          aws.String(c.cfg.QueueURL),
		ReceiptHandle:     aws.String(m.receipt),
		VisibilityTimeout: int32(d / time.Second), //nolint:gosec // G115: d is the validated VisibilityTimeout or a delay clamped to maxVisibility (12h)
	})
	if err != nil {
		return fmt.Errorf("change visibility of %s: %w", m.ID, err)
	}
	return nil
}

// sleep waits d or until ctx is done; it reports whether the full time passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
