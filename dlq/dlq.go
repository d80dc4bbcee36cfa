// Package dlq inspects and redrives dead-lettered messages: the ones the
// worker moved at once (with orderpipe_dlq_* attributes saying why) and the
// ones SQS moved after maxReceiveCount receives.
package dlq

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/worker"
)

// Letter is one dead-lettered message.
type Letter struct {
	ID           string
	Reason       string // orderpipe_dlq_reason, or ReasonMaxReceives
	Error        string
	ReceiveCount string
	SentAt       time.Time
	Body         string
	Attributes   map[string]string // the message's own attributes (event_type, ...)

	receipt string
	attrs   map[string]sqstypes.MessageAttributeValue
}

// ReasonMaxReceives marks a message SQS moved after maxReceiveCount receives.
const ReasonMaxReceives = "max_receive_count_exceeded"

// holdFor is how long a listed or redriven message stays invisible to
// others while this package works on it.
const holdFor = 30

// List returns up to limit messages of the DLQ. They stay in it: each is
// made visible again as soon as it has been read.
func List(ctx context.Context, client *sqs.Client, dlqURL string, limit int) ([]Letter, error) {
	var out []Letter
	err := walk(ctx, client, dlqURL, limit, func(l Letter) (bool, error) {
		out = append(out, l)
		return false, nil
	})
	return out, err
}

// Redrive sends the DLQ's messages that match back to sourceURL, with their
// own attributes (the orderpipe_dlq_* ones dropped), and deletes each from
// the DLQ only after its copy was sent: a failure between the two leaves a
// duplicate, which the worker's idempotency absorbs, never a loss. It
// returns how many it moved.
func Redrive(ctx context.Context, client *sqs.Client, dlqURL, sourceURL string, match func(Letter) bool) (int, error) {
	moved := 0
	err := walk(ctx, client, dlqURL, 0, func(l Letter) (bool, error) {
		if match != nil && !match(l) {
			return false, nil
		}
		attrs := map[string]sqstypes.MessageAttributeValue{}
		for k, v := range l.attrs {
			if !strings.HasPrefix(k, "orderpipe_dlq_") {
				attrs[k] = v
			}
		}
		if _, err := client.SendMessage(ctx, &sqs.SendMessageInput{
			QueueUrl: aws.String(sourceURL), MessageBody: aws.String(l.Body), MessageAttributes: attrs,
		}); err != nil {
			return false, fmt.Errorf("redrive %s: send: %w", l.ID, err)
		}
		if _, err := client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: aws.String(l.receipt)}); err != nil {
			return true, fmt.Errorf("redrive %s: sent, but not deleted from the DLQ (a duplicate the worker will absorb): %w", l.ID, err)
		}
		moved++
		return true, nil
	})
	return moved, err
}

// walk receives the DLQ's messages once each (up to limit; 0 for all) and
// calls fn; messages fn did not consume are made visible again at the end.
func walk(ctx context.Context, client *sqs.Client, dlqURL string, limit int, fn func(Letter) (consumed bool, err error)) error {
	seen := map[string]bool{}
	var held []sqstypes.ChangeMessageVisibilityBatchRequestEntry
	defer func() { releaseAll(client, dlqURL, held) }()
	for empty := 0; empty < 2; {
		out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, VisibilityTimeout: holdFor, WaitTimeSeconds: 1,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
		})
		if err != nil {
			return fmt.Errorf("read %s: %w", dlqURL, err)
		}
		fresh := 0
		for _, m := range out.Messages {
			id := aws.ToString(m.MessageId)
			if seen[id] {
				continue
			}
			seen[id], fresh = true, fresh+1
			l := letter(m)
			consumed, err := fn(l)
			if !consumed {
				held = append(held, sqstypes.ChangeMessageVisibilityBatchRequestEntry{
					Id: aws.String(strconv.Itoa(len(held))), ReceiptHandle: m.ReceiptHandle, VisibilityTimeout: 0,
				})
			}
			if err != nil {
				return err
			}
			if limit > 0 && len(seen) >= limit {
				return nil
			}
		}
		if fresh == 0 {
			empty++
		} else {
			empty = 0
		}
	}
	return nil
}

func letter(m sqstypes.Message) Letter {
	l := Letter{ID: aws.ToString(m.MessageId), Body: aws.ToString(m.Body), receipt: aws.ToString(m.ReceiptHandle),
		Attributes: map[string]string{}, attrs: m.MessageAttributes, Reason: ReasonMaxReceives}
	for k, v := range m.MessageAttributes {
		s := aws.ToString(v.StringValue)
		switch k {
		case worker.AttrDLQReason:
			l.Reason = s
		case worker.AttrDLQError:
			l.Error = s
		case worker.AttrDLQReceiveCount:
			l.ReceiveCount = s
		case worker.AttrDLQSourceQueue:
		default:
			l.Attributes[k] = s
		}
	}
	if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		l.SentAt = time.UnixMilli(ms).UTC()
	}
	return l
}

func releaseAll(client *sqs.Client, url string, entries []sqstypes.ChangeMessageVisibilityBatchRequestEntry) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(entries) > 0 {
		n := min(len(entries), 10)
		_, _ = client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries[:n]})
		entries = entries[n:]
	}
}
