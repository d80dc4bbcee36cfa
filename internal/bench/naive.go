package bench

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/worker"
)

// naive runs the baseline a first version would be: one goroutine per
// queue that receives one message, handles it and deletes it, with the
// worker's own handler stack (decode, Redis idempotency, in-process retry,
// the three handlers on the product cache) and pool size. The load
// saturates it, with the same bounded backlog as the maximum run, for d.
func (b *Bench) naive(ctx context.Context, d time.Duration) (RunResult, error) {
	res := RunResult{Name: "naive consumer: 1 goroutine per queue, 1 message at a time"}
	if err := b.s.Reset(ctx); err != nil {
		return res, err
	}
	// The loops' SQS calls and the handlers' SMTP commands counted as the
	// worker counts them; the load's publishes and polls are not.
	m := metrics.New()
	hs, closeAll, err := b.workerHandlers(ctx, m)
	if err != nil {
		return res, err
	}
	defer closeAll()
	sqsc := sqs.NewFromConfig(b.net.AWS, func(o *sqs.Options) { o.APIOptions = append(o.APIOptions, app.CountAWSRequests(m)) })
	cctx, cancel := context.WithCancel(ctx)
	var (
		wg     sync.WaitGroup
		failed atomic.Int64
	)
	for name, h := range hs {
		url := b.s.Applied.Queues[name].URL
		wg.Go(func() { failed.Add(int64(naiveLoop(cctx, sqsc, url, h))) })
	}
	conns := SampleConns(ctx, b.s.Admin, b.s.Cfg.DBName, 100*time.Millisecond)
	cost := b.startCost(ctx, 0, gatherMetrics(m.Registry))
	tr := NewTracker()
	start := time.Now()
	lr, loadErr := b.load(ctx, pipelineRun{name: "naive", duration: d}, tr)
	cancel()
	wg.Wait()
	res.CPU, res.Cost = cost.stop(ctx, func() int { n, _ := b.s.Processed(ctx); return n / 3 })
	res.DBConns = conns.Stop()
	res.Elapsed = time.Since(start).Seconds()
	if lr.Published == 0 {
		return res, loadErr
	}
	cs, err := b.s.Completions(ctx, tr)
	if err != nil {
		return res, err
	}
	done := make([]time.Time, len(cs))
	for i, c := range cs {
		done[i] = c.Done
	}
	res.Published, res.Completed, res.Errors = lr.Published, len(cs), int(failed.Load())
	res.Backlog = lr.Backlog
	res.Throughput, res.Overall = SteadyRate(done), OverallRate(cs)
	return res, nil
}

// workerHandlers builds the worker's handler stack per queue with
// internal/app's own wiring, its SMTP commands counted on m.
func (b *Bench) workerHandlers(ctx context.Context, m *metrics.Metrics) (map[string]worker.Handler, func(), error) {
	db, err := store.Open(ctx, store.Config{URL: b.net.DBURL, MaxConns: b.cfg.DBMaxConns, Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	rdb, err := redisstore.Open(ctx, redisstore.Config{URL: b.net.RedisURL, KeyPrefix: b.s.Cfg.RedisPrefix, Logger: quiet, Metrics: m})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	closeAll := func() { _ = rdb.Close(); db.Close() }
	mail, err := mailer.New(mailer.Config{Addr: b.net.SMTPAddr, CommandFunc: app.CountSMTPCommands(m, nil)})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	hs, err := app.Handlers(app.Deps{DB: db, Redis: rdb, OutboxTopic: b.s.Top.Topic, Sender: mail, Logger: quiet})
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return hs, closeAll, nil
}

// naiveLoop receives one message at a time, handles it and deletes it,
// until ctx ends. A failed message is left to come back after its
// visibility timeout. It returns how many failed.
func naiveLoop(ctx context.Context, sqsc *sqs.Client, url string, h worker.Handler) int {
	failed := 0
	for ctx.Err() == nil {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 1, WaitTimeSeconds: 1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount},
		})
		if err != nil {
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		for _, m := range out.Messages {
			msg := &worker.Message{ID: aws.ToString(m.MessageId), Body: []byte(aws.ToString(m.Body)), Attributes: map[string]string{}}
			msg.ReceiveCount, _ = strconv.Atoi(m.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)])
			if err := h.Handle(ctx, msg); err != nil {
				failed++
				continue
			}
			_, _ = sqsc.DeleteMessage(context.WithoutCancel(ctx), &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
	}
	return failed
}
