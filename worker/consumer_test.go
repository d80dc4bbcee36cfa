package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// queue creates a queue with the given visibility timeout, and a DLQ.
func queue(t *testing.T, sqsc *sqs.Client, visibility int) (url, dlq string) {
	t.Helper()
	ctx := context.Background()
	name := "w" + uuid.NewString()[:8]
	for _, q := range []struct {
		name string
		out  *string
	}{{name, &url}, {name + "-dlq", &dlq}} {
		out, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(q.name),
			Attributes: map[string]string{string(sqstypes.QueueAttributeNameVisibilityTimeout): strconv.Itoa(visibility)}})
		if err != nil {
			t.Fatal(err)
		}
		*q.out = aws.ToString(out.QueueUrl)
		t.Cleanup(func() { _, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: out.QueueUrl}) })
	}
	return url, dlq
}

func run(t *testing.T, sqsc *sqs.Client, h worker.Handler, cfg worker.Config) {
	t.Helper()
	cfg.Name, cfg.WaitTime, cfg.Logger = "test", time.Second, testenv.Logger()
	c, err := worker.New(sqsc, h, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestHeartbeatKeepsASlowMessageFromRedelivery runs a handler for more than
// twice the queue's visibility timeout: the heartbeat keeps extending the
// message, so it is handled once and then deleted.
func TestHeartbeatKeepsASlowMessageFromRedelivery(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "worker")
	sqsc := sqs.NewFromConfig(env.AWS)
	url, dlq := queue(t, sqsc, 2)
	var calls atomic.Int32
	finished := make(chan struct{})
	run(t, sqsc, worker.HandlerFunc(func(ctx context.Context, _ *worker.Message) error {
		if calls.Add(1) == 1 {
			defer close(finished)
			select {
			case <-time.After(4500 * time.Millisecond):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}), worker.Config{QueueURL: url, DLQURL: dlq, VisibilityTimeout: 2 * time.Second})

	if _, err := sqsc.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("slow")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("the slow handler never finished")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if n, err := topology.Depth(context.Background(), sqsc, url); err != nil || n != 0 {
			return fmt.Errorf("queue holds %d messages (%w)", n, err)
		}
		return nil
	})
	// A lapse of the heartbeat would have made the message visible while
	// the handler ran, and this consumer would have received it again then:
	// with the queue empty, every delivery there was has been handled.
	if n := calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1 (the message became visible again while its handler ran)", n)
	}
}

// TestPermanentFailureIsDeadLetteredAtOnce: a Permanent error moves the
// message to the DLQ on its first receive, with the reason.
func TestPermanentFailureIsDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "worker")
	sqsc := sqs.NewFromConfig(env.AWS)
	url, dlq := queue(t, sqsc, 5)
	var calls atomic.Int32
	run(t, sqsc, worker.HandlerFunc(func(context.Context, *worker.Message) error {
		calls.Add(1)
		return worker.Permanent("bad_input", errors.New("never valid"))
	}), worker.Config{QueueURL: url, DLQURL: dlq, VisibilityTimeout: 5 * time.Second})
	if _, err := sqsc.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String("x")}); err != nil {
		t.Fatal(err)
	}
	var reason string
	testenv.Eventually(t, 15*time.Second, func() error {
		out, err := sqsc.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(dlq), WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return err
		}
		if len(out.Messages) == 0 {
			return errors.New("DLQ empty")
		}
		reason = aws.ToString(out.Messages[0].MessageAttributes[worker.AttrDLQReason].StringValue)
		return nil
	})
	if reason != "bad_input" || calls.Load() != 1 {
		t.Errorf("dead-lettered with reason %q after %d calls, want bad_input after 1", reason, calls.Load())
	}
}
