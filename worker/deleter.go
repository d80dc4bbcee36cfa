package worker

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// deleteFlushInterval bounds how long a finished message waits for its batch.
// A crash in that window only means a redelivery, which handlers absorb.
const deleteFlushInterval = 20 * time.Millisecond

// deleter deletes finished messages in batches of up to ten.
type deleter struct {
	client   SQSAPI
	queueURL string
	log      *slog.Logger
	in       chan string
	done     chan struct{}

	mu     sync.Mutex
	closed bool
}

func newDeleter(client SQSAPI, queueURL string, log *slog.Logger) *deleter {
	return &deleter{client: client, queueURL: queueURL, log: log, in: make(chan string, 100), done: make(chan struct{})}
}

// add queues a receipt for deletion. After close (a handler that outlived
// the shutdown) it drops it: the message is redelivered, never lost.
func (d *deleter) add(receipt string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.closed {
		d.in <- receipt
	}
}

// close flushes what is pending and stops the deleter.
func (d *deleter) close() {
	d.mu.Lock()
	d.closed = true
	close(d.in)
	d.mu.Unlock()
	<-d.done
}

// run deletes batches until close. ctx must not be cancelled by shutdown
// (Run passes context.WithoutCancel): deletes must finish even then.
func (d *deleter) run(ctx context.Context) {
	defer close(d.done)
	var batch []string
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case r, ok := <-d.in:
			if !ok {
				d.flush(ctx, batch)
				return
			}
			batch = append(batch, r)
			if len(batch) == 1 {
				timer.Reset(deleteFlushInterval)
			}
			if len(batch) == maxReceiveBatch {
				timer.Stop()
				d.flush(ctx, batch)
				batch = nil
			}
		case <-timer.C:
			d.flush(ctx, batch)
			batch = nil
		}
	}
}

func (d *deleter) flush(ctx context.Context, receipts []string) {
	if len(receipts) == 0 {
		return
	}
	// Deletes must finish even during shutdown, so they do not inherit any
	// caller's cancellation; they are bounded by their own timeout instead.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	entries := make([]sqstypes.DeleteMessageBatchRequestEntry, len(receipts))
	for i, r := range receipts {
		entries[i] = sqstypes.DeleteMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r)}
	}
	out, err := d.client.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(d.queueURL), Entries: entries})
	if err != nil {
		d.log.Error("delete batch failed; the messages will be redelivered and skipped as duplicates", "err", fmt.Errorf("delete %d messages: %w", len(receipts), err))
		return
	}
	for _, f := range out.Failed {
		if aws.ToString(f.Code) == "ReceiptHandleIsInvalid" {
			continue // already deleted or expired: nothing left to do
		}
		d.log.Error("delete failed; the message will be redelivered and skipped as a duplicate",
			"code", aws.ToString(f.Code), "detail", aws.ToString(f.Message))
	}
}
