package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// RuntimeResult compares the consumer runtime alone (a no-op handler) with
// the raw ceiling of the SNS/SQS endpoint, draining the same backlog.
type RuntimeResult struct {
	Messages int `json:"messages"`
	// FillRate is how fast SendMessageBatch filled the queue (messages/s).
	FillRate float64 `json:"fill_rate"`
	// RawConcurrency loops of ReceiveMessage (10) + DeleteMessageBatch, no handler.
	RawConcurrency int     `json:"raw_concurrency"`
	RawRate        float64 `json:"raw_rate"`
	// ConsumerMaxInFlight is worker.Config.MaxInFlight of the consumer run.
	ConsumerMaxInFlight int     `json:"consumer_max_in_flight"`
	ConsumerRate        float64 `json:"consumer_rate"`
	// RawMissing and ConsumerMissing count messages a drain never got: a
	// receive whose response was lost (the SDK retried it) leaves its
	// messages invisible for the visibility timeout. A drain ends once the
	// queue has had nothing visible for drainIdle.
	RawMissing      int `json:"raw_missing,omitempty"`
	ConsumerMissing int `json:"consumer_missing,omitempty"`
}

// Ratio is ConsumerRate / RawRate.
func (r RuntimeResult) Ratio() float64 { return ratio(r.ConsumerRate, r.RawRate) }

// runtimeVisibility is long enough that no message of a drain comes back
// before the drain is over.
const runtimeVisibility = 5 * time.Minute

// drainIdle ends a drain that has received nothing for this long.
const drainIdle = 2 * time.Second

// runtimeBench fills a queue of its own with Messages order events and
// drains it twice: raw (concurrent 10-message receives and batch deletes),
// then with worker.Consumer and a no-op handler.
func (b *Bench) runtimeBench(ctx context.Context) (RuntimeResult, error) {
	res := RuntimeResult{Messages: b.cfg.RuntimeMessages, RawConcurrency: b.cfg.RawConcurrency, ConsumerMaxInFlight: b.cfg.MaxInFlight}
	url, dlq, err := b.runtimeQueues(ctx)
	if err != nil {
		return res, err
	}
	if res.FillRate, err = b.fill(ctx, url, res.Messages); err != nil {
		return res, err
	}
	var got int
	if res.RawRate, got, err = b.rawDrain(ctx, url, res.Messages); err != nil {
		return res, err
	}
	res.RawMissing = res.Messages - got
	if err := PurgeQueues(ctx, b.sqs, url); err != nil {
		return res, err
	}
	if _, err = b.fill(ctx, url, res.Messages); err != nil {
		return res, err
	}
	if res.ConsumerRate, got, err = b.consumerDrain(ctx, url, dlq, res.Messages); err != nil {
		return res, err
	}
	res.ConsumerMissing = res.Messages - got
	if res.ConsumerMissing > 0 {
		return res, nil // what it never received is still in flight
	}
	return res, b.checkEmpty(ctx, url)
}

func (b *Bench) runtimeQueues(ctx context.Context) (string, string, error) {
	var urls [2]string
	for i, name := range []string{b.s.Cfg.Prefix + "runtime", b.s.Cfg.Prefix + "runtime-dlq"} {
		out, err := b.sqs.CreateQueue(ctx, &sqs.CreateQueueInput{
			QueueName: aws.String(name),
			Attributes: map[string]string{
				string(sqstypes.QueueAttributeNameVisibilityTimeout): strconv.Itoa(int(runtimeVisibility / time.Second)),
			},
		})
		if err != nil {
			return "", "", fmt.Errorf("bench: create queue %s: %w", name, err)
		}
		urls[i] = aws.ToString(out.QueueUrl)
	}
	return urls[0], urls[1], PurgeQueues(ctx, b.sqs, urls[:]...)
}

// fill sends n messages (encoded orders) with SendMessageBatch from
// RawConcurrency goroutines and returns the rate.
func (b *Bench) fill(ctx context.Context, url string, n int) (float64, error) {
	bodies := make([]string, 64)
	for i := range bodies {
		body, err := events.Encode(b.gen.Order(time.Now()))
		if err != nil {
			return 0, err
		}
		bodies[i] = string(body)
	}
	prog := NewProgress(b.cfg.Log, "fill queue", "messages", n, 10*time.Second)
	defer prog.Finish()
	batches := make(chan int)
	var (
		wg      sync.WaitGroup
		lastErr atomic.Pointer[error]
	)
	for range b.cfg.RawConcurrency {
		wg.Go(func() {
			for size := range batches {
				if err := sendBatch(ctx, b.sqs, url, bodies, size); err != nil {
					lastErr.Store(&err)
					continue
				}
				prog.Add(size)
			}
		})
	}
	start := time.Now()
	for sent := 0; sent < n && ctx.Err() == nil; sent += 10 {
		batches <- min(10, n-sent)
	}
	close(batches)
	wg.Wait()
	if p := lastErr.Load(); p != nil {
		return 0, *p
	}
	return float64(n) / time.Since(start).Seconds(), ctx.Err()
}

func sendBatch(ctx context.Context, sqsc *sqs.Client, url string, bodies []string, size int) error {
	entries := make([]sqstypes.SendMessageBatchRequestEntry, size)
	for i := range entries {
		entries[i] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(bodies[(i*7+size)%len(bodies)])}
	}
	for attempt := 0; len(entries) > 0; attempt++ {
		out, err := sqsc.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return fmt.Errorf("bench: send batch: %w", err)
		}
		if len(out.Failed) == 0 {
			return nil
		}
		if attempt == 4 {
			return fmt.Errorf("bench: send batch: %d entries failed: %s", len(out.Failed), aws.ToString(out.Failed[0].Message))
		}
		failed := map[string]bool{}
		for _, f := range out.Failed {
			failed[aws.ToString(f.Id)] = true
		}
		retry := entries[:0]
		for _, e := range entries {
			if failed[aws.ToString(e.Id)] {
				retry = append(retry, e)
			}
		}
		entries = retry
	}
	return nil
}

// rawDrain is the endpoint's ceiling: RawConcurrency loops that receive ten
// messages at a time and hand them to as many goroutines that delete them
// in one batch call; no handler, nothing else. It returns the rate and how
// many messages it deleted.
func (b *Bench) rawDrain(ctx context.Context, url string, n int) (float64, int, error) {
	prog := NewProgress(b.cfg.Log, "raw drain", "messages", n, 10*time.Second)
	defer prog.Finish()
	var (
		got, deleted atomic.Int64
		last         atomic.Int64 // unix nanos of the last delete
		receivers    sync.WaitGroup
		deleters     sync.WaitGroup
		lastErr      atomic.Pointer[error]
	)
	fail := func(err error) { lastErr.Store(&err) }
	toDelete := make(chan []sqstypes.Message, b.cfg.RawConcurrency)
	start := time.Now()
	idle := newIdle()
	for range b.cfg.RawConcurrency {
		deleters.Go(func() {
			for msgs := range toDelete {
				if err := deleteBatch(ctx, b.sqs, url, msgs); err != nil {
					fail(err)
					continue
				}
				deleted.Add(int64(len(msgs)))
				last.Store(time.Now().UnixNano())
				prog.Add(len(msgs))
			}
		})
		receivers.Go(func() {
			for got.Load() < int64(n) && !idle.over() && ctx.Err() == nil && lastErr.Load() == nil {
				msgs, err := receive10(ctx, b.sqs, url)
				if err != nil {
					fail(err)
					return
				}
				if len(msgs) > 0 {
					idle.reset()
					got.Add(int64(len(msgs)))
					toDelete <- msgs
				}
			}
		})
	}
	receivers.Wait()
	close(toDelete)
	deleters.Wait()
	if p := lastErr.Load(); p != nil {
		return 0, 0, *p
	}
	k := deleted.Load()
	return float64(k) / time.Unix(0, last.Load()).Sub(start).Seconds(), int(k), ctx.Err()
}

// idleClock says whether drainIdle has passed since the last reset.
type idleClock struct{ at atomic.Int64 }

func newIdle() *idleClock {
	c := &idleClock{}
	c.reset()
	return c
}

func (c *idleClock) reset()     { c.at.Store(time.Now().UnixNano()) }
func (c *idleClock) over() bool { return time.Since(time.Unix(0, c.at.Load())) > drainIdle }

func receive10(ctx context.Context, sqsc *sqs.Client, url string) ([]sqstypes.Message, error) {
	out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1,
		VisibilityTimeout: int32(runtimeVisibility / time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("bench: receive: %w", err)
	}
	return out.Messages, nil
}

func deleteBatch(ctx context.Context, sqsc *sqs.Client, url string, msgs []sqstypes.Message) error {
	entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(msgs))
	for i, m := range msgs {
		entries[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: m.ReceiptHandle}
	}
	if _, err := sqsc.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: entries}); err != nil {
		return fmt.Errorf("bench: delete batch: %w", err)
	}
	return nil
}

// consumerDrain runs worker.Consumer with a no-op handler until it has
// handled n messages (or nothing came for drainIdle), then stops it, which
// flushes its pending deletes. It returns the rate and how many it handled.
func (b *Bench) consumerDrain(ctx context.Context, url, dlq string, n int) (float64, int, error) {
	prog := NewProgress(b.cfg.Log, "worker.Consumer drain", "messages", n, 10*time.Second)
	defer prog.Finish()
	var (
		handled atomic.Int64
		last    atomic.Int64 // unix nanos of the last message handled
		once    sync.Once
	)
	all := make(chan struct{})
	h := worker.HandlerFunc(func(context.Context, *worker.Message) error {
		prog.Add(1)
		last.Store(time.Now().UnixNano())
		if handled.Add(1) >= int64(n) {
			once.Do(func() { close(all) })
		}
		return nil
	})
	c, err := worker.New(b.sqs, h, worker.Config{
		Name: "bench-runtime", QueueURL: url, DLQURL: dlq,
		MaxInFlight: b.cfg.MaxInFlight, VisibilityTimeout: runtimeVisibility, Logger: quiet,
	})
	if err != nil {
		return 0, 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopped := make(chan struct{})
	start := time.Now()
	last.Store(start.UnixNano())
	go func() { _ = c.Run(rctx); close(stopped) }()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-all:
			break wait
		case <-ctx.Done():
			break wait
		case <-tick.C:
			if time.Since(time.Unix(0, last.Load())) > drainIdle {
				break wait
			}
		}
	}
	cancel()
	<-stopped
	k := handled.Load()
	return float64(k) / time.Unix(0, last.Load()).Sub(start).Seconds(), int(k), ctx.Err()
}

// checkEmpty confirms that the consumer deleted what it handled.
func (b *Bench) checkEmpty(ctx context.Context, url string) error {
	for range 50 {
		n, err := topology.Depth(ctx, b.sqs, url)
		if err != nil || n == 0 {
			return err
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return errors.New("bench: the runtime queue is not empty after the consumer drained it: deletes were lost")
}
