// Package lambdaharness plays AWS Lambda's SQS event source mapping against
// a real SQS (the local emulator), so that the functions (cmd/lambda,
// internal/lambdafn) run as Lambda runs them without AWS: it receives a
// batch, builds the events.SQSEvent JSON Lambda would send, invokes the
// function through aws-lambda-go's lambda.Handler with the invocation's
// deadline, deletes the records the partial batch response does not name,
// and leaves the rest to come back after their visibility timeout.
//
// What it models, as AWS documents the event source mapping:
//
//   - Environments: up to MaxConcurrency (ScalingConfig.MaximumConcurrency),
//     each one invocation at a time, each built on its first batch (a
//     cold start) and kept until Stop.
//   - Batches: up to BatchSize records, gathered for at most
//     MaxBatchingWindow (or what one receive brings without it).
//   - A function error, a timeout (an invocation that returns after its
//     deadline) or an invalid response (an item identifier that is empty
//     or not in the batch): the whole batch fails, nothing is deleted.
//   - A valid response: everything but its batchItemFailures is deleted.
//
// Not modelled: the event source's own scaling of pollers (it runs
// MaxConcurrency from the start), its backoff after errors, and the
// records' delivery order across pollers.
package lambdaharness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/internal/lambdafn"
)

// Config configures an event source mapping.
type Config struct {
	// SQS is the client of the queue's SQS (the emulator). Required.
	SQS *sqs.Client
	// QueueURL is the event source. Required.
	QueueURL string
	// Region is the records' awsRegion. Defaults to us-east-1.
	Region string
	// FunctionName names the invocations' function ARN.
	FunctionName string
	// NewEnvironment starts one execution environment: what the function's
	// init phase builds, as aws-lambda-go's handler, and how it shuts
	// down. Required.
	NewEnvironment func(ctx context.Context) (h lambda.Handler, shutdown func(), err error)
	// BatchSize is the most records per invocation. Defaults to 10.
	BatchSize int
	// MaxBatchingWindow is how long records are gathered towards
	// BatchSize. Defaults to 0: one receive's worth.
	MaxBatchingWindow time.Duration
	// MaxConcurrency is the most environments (and invocations at once).
	// Defaults to 2.
	MaxConcurrency int
	// Timeout is the function's timeout: each invocation's deadline.
	// Defaults to 30s.
	Timeout time.Duration
	// WaitTime is each receive's long poll. Defaults to 1s (Stop waits
	// for at most one).
	WaitTime time.Duration
	// Logger receives the harness's own lines. Defaults to slog.Default().
	Logger *slog.Logger
}

// Stats are what an event source mapping did.
type Stats struct {
	Environments int // started (cold starts)
	Invocations  int
	Records      int           // handed to the function
	ItemFailures int           // records the responses named as failed
	BatchErrors  int           // invocations failed whole (error, timeout, invalid response)
	Deleted      int           // records deleted
	Busy         time.Duration // the invocations' time, summed
}

// ESM is a running event source mapping.
type ESM struct {
	cfg      Config
	queueARN string
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu    sync.Mutex
	stats Stats
	envs  []func()
	errs  []error

	invocations atomic.Int64
}

// Start starts polling; Stop ends it.
func Start(ctx context.Context, cfg Config) (*ESM, error) {
	if cfg.SQS == nil || cfg.QueueURL == "" || cfg.NewEnvironment == nil {
		return nil, errors.New("lambdaharness: Config.SQS, QueueURL and NewEnvironment are required")
	}
	cfg.Region = or(cfg.Region, "us-east-1")
	cfg.FunctionName = or(cfg.FunctionName, "orderpipe")
	cfg.BatchSize = orInt(cfg.BatchSize, 10)
	cfg.MaxConcurrency = orInt(cfg.MaxConcurrency, 2)
	cfg.Timeout = orDur(cfg.Timeout, 30*time.Second)
	cfg.WaitTime = orDur(cfg.WaitTime, time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := cfg.SQS.GetQueueAttributes(cctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(cfg.QueueURL), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return nil, fmt.Errorf("lambdaharness: the ARN of %s: %w", cfg.QueueURL, err)
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	e := &ESM{cfg: cfg, queueARN: out.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], cancel: stop}
	for range cfg.MaxConcurrency {
		e.wg.Go(func() { e.poll(rctx) })
	}
	return e, nil
}

// Stop stops receiving, waits for the invocations in progress (each within
// its timeout) and shuts the environments down. It returns the errors the
// harness met that a test should see (an environment that failed to start,
// a function error).
func (e *ESM) Stop() error {
	e.cancel()
	e.wg.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, shutdown := range e.envs {
		shutdown()
	}
	e.envs = nil
	return errors.Join(e.errs...)
}

// Stats returns what the mapping did so far.
func (e *ESM) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.stats
}

// poll is one poller with its environment, built on its first batch.
func (e *ESM) poll(ctx context.Context) {
	var h lambda.Handler
	failures := 0
	for ctx.Err() == nil {
		msgs, err := e.receive(ctx)
		if err != nil {
			if ctx.Err() == nil {
				failures++
				e.cfg.Logger.Warn("lambdaharness: receive failed", "err", err)
				sleep(ctx, min(time.Duration(failures)*100*time.Millisecond, time.Second))
			}
			continue
		}
		failures = 0
		if len(msgs) == 0 {
			continue
		}
		if h == nil {
			if h, err = e.startEnvironment(ctx); err != nil {
				e.fail(err)
				// Lambda retries the init on the next batch; the records
				// come back after their visibility timeout.
				sleep(ctx, time.Second)
				continue
			}
		}
		e.invoke(ctx, h, msgs)
	}
}

func (e *ESM) startEnvironment(ctx context.Context) (lambda.Handler, error) {
	h, shutdown, err := e.cfg.NewEnvironment(ctx)
	if err != nil {
		return nil, fmt.Errorf("lambdaharness: environment init: %w", err)
	}
	e.mu.Lock()
	e.envs = append(e.envs, shutdown)
	e.stats.Environments++
	e.mu.Unlock()
	return h, nil
}

func (e *ESM) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.errs = append(e.errs, err)
}

// receive gathers up to BatchSize messages: the first receive long-polls,
// later ones (within MaxBatchingWindow) take what is there.
func (e *ESM) receive(ctx context.Context) ([]sqstypes.Message, error) {
	var msgs []sqstypes.Message
	windowEnd := time.Now().Add(e.cfg.MaxBatchingWindow)
	wait := e.cfg.WaitTime
	for len(msgs) < e.cfg.BatchSize {
		rctx, cancel := context.WithTimeout(ctx, wait+10*time.Second)
		out, err := e.cfg.SQS.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl:                    aws.String(e.cfg.QueueURL),
			MaxNumberOfMessages:         int32(min(e.cfg.BatchSize-len(msgs), 10)), //nolint:gosec // G115: at most 10
			WaitTimeSeconds:             int32(wait / time.Second),
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameAll},
		})
		cancel()
		if err != nil {
			if len(msgs) > 0 {
				return msgs, nil // what was gathered goes; the error comes back on the next receive
			}
			return nil, fmt.Errorf("receive from %s: %w", e.cfg.QueueURL, err)
		}
		msgs = append(msgs, out.Messages...)
		if e.cfg.MaxBatchingWindow <= 0 || time.Now().After(windowEnd) || (len(out.Messages) == 0 && len(msgs) > 0) {
			return msgs, nil
		}
		wait = 0
	}
	return msgs, nil
}

// invoke runs one invocation and settles its batch as the event source does.
func (e *ESM) invoke(ctx context.Context, h lambda.Handler, msgs []sqstypes.Message) {
	ev := events.SQSEvent{Records: make([]events.SQSMessage, len(msgs))}
	for i, m := range msgs {
		ev.Records[i] = lambdafn.Record(m, e.queueARN, e.cfg.Region)
	}
	payload, err := json.Marshal(ev)
	if err != nil {
		e.fail(fmt.Errorf("lambdaharness: encode the event: %w", err))
		return
	}
	n := e.invocations.Add(1)
	ictx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.Timeout)
	defer cancel()
	ictx = lambdacontext.NewContext(ictx, &lambdacontext.LambdaContext{
		AwsRequestID:       uuid.NewString(),
		InvokedFunctionArn: "arn:aws:lambda:" + e.cfg.Region + ":000000000000:function:" + e.cfg.FunctionName,
	})
	deadline, _ := ictx.Deadline()
	start := time.Now()
	out, err := h.Invoke(ictx, payload)
	took := time.Since(start)
	if err == nil && time.Now().After(deadline) {
		err = fmt.Errorf("Task timed out after %s", e.cfg.Timeout) //nolint:staticcheck // ST1005: Lambda's own wording
	}
	var keep map[string]bool
	if err == nil {
		keep, err = failures(out, msgs)
	}
	e.mu.Lock()
	e.stats.Invocations++
	e.stats.Records += len(msgs)
	e.stats.Busy += took
	if err != nil {
		e.stats.BatchErrors++
	} else {
		e.stats.ItemFailures += len(keep)
	}
	e.mu.Unlock()
	if err != nil {
		e.cfg.Logger.Warn("lambdaharness: the whole batch failed; nothing is deleted", "invocation", n, "records", len(msgs), "err", err)
		return
	}
	e.delete(ctx, msgs, keep)
}

// failures reads a partial batch response: the ids it names as failed. An
// identifier that is empty or not in the batch makes the whole response
// invalid, as for Lambda.
func failures(out []byte, msgs []sqstypes.Message) (map[string]bool, error) {
	var resp events.SQSEventResponse
	if len(out) > 0 && string(out) != "null" {
		if err := json.Unmarshal(out, &resp); err != nil {
			return nil, fmt.Errorf("invalid partial batch response %.200s: %w", out, err)
		}
	}
	in := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		in[aws.ToString(m.MessageId)] = true
	}
	keep := map[string]bool{}
	for _, f := range resp.BatchItemFailures {
		if f.ItemIdentifier == "" || !in[f.ItemIdentifier] {
			return nil, fmt.Errorf("invalid partial batch response: item identifier %q is not in the batch", f.ItemIdentifier)
		}
		keep[f.ItemIdentifier] = true
	}
	return keep, nil
}

// delete deletes the batch's records but those kept, in batches of ten,
// each within 10 s.
func (e *ESM) delete(ctx context.Context, msgs []sqstypes.Message, keep map[string]bool) {
	var entries []sqstypes.DeleteMessageBatchRequestEntry
	for i, m := range msgs {
		if !keep[aws.ToString(m.MessageId)] {
			entries = append(entries, sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle})
		}
	}
	for from := 0; from < len(entries); from += 10 {
		chunk := entries[from:min(from+10, len(entries))]
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		out, err := e.cfg.SQS.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(e.cfg.QueueURL), Entries: chunk})
		cancel()
		if err != nil {
			e.cfg.Logger.Warn("lambdaharness: delete failed; the records come back and are acknowledged as duplicates", "err", err)
			continue
		}
		e.mu.Lock()
		e.stats.Deleted += len(out.Successful)
		e.mu.Unlock()
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func orInt(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

func orDur(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
