// Package dlq inspects and redrives dead-lettered messages: the ones the
// worker moved at once (with orderpipe_dlq_* attributes saying why) and the
// ones SQS moved after maxReceiveCount receives.
//
// Everything in a Letter came from a message and may hold what a producer
// put there, control characters included: print it through Printable or
// PrintableJSON.
package dlq

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/worker"
)

// SQSAPI is the part of the SQS client this package uses.
type SQSAPI interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, opts ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error)
	DeleteMessage(ctx context.Context, in *sqs.DeleteMessageInput, opts ...func(*sqs.Options)) (*sqs.DeleteMessageOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, opts ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, opts ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Letter is one dead-lettered message.
type Letter struct {
	ID           string
	Reason       string // orderpipe_dlq_reason, or ReasonMaxReceives
	Error        string
	ReceiveCount string
	SourceQueue  string // orderpipe_dlq_source_queue
	SentAt       time.Time
	Body         string
	Attributes   map[string]string // the message's own attributes (event_type, ...)

	receipt string
	attrs   map[string]sqstypes.MessageAttributeValue
}

// ReasonMaxReceives marks a message SQS moved after maxReceiveCount receives.
const ReasonMaxReceives = "max_receive_count_exceeded"

const (
	// holdFor is how long (s) a listed or redriven message stays invisible
	// to others while this package works on it.
	holdFor = 30
	// receiveWait is each receive's long poll (s).
	receiveWait = 1
	// idleReceives: a walk ends after this many receives in a row brought
	// no message it had not seen.
	idleReceives = 2
	// callTimeout bounds each SQS call.
	callTimeout = 10 * time.Second
)

// Bounds of a walk.
const (
	// ListTimeout bounds List and Find.
	ListTimeout = time.Minute
	// RedriveTimeoutDefault bounds a redrive unless RedriveConfig.Timeout
	// says otherwise.
	RedriveTimeoutDefault = 10 * time.Minute
	// RedriveMarginDefault is added to the DLQ's depth at the start to bound
	// how many messages one redrive sends back.
	RedriveMarginDefault = 10
)

// ErrDeadline is wrapped by the error of a walk that ran out of time.
var ErrDeadline = errors.New("deadline reached")

// List returns up to limit messages of the DLQ (0 for all, within
// ListTimeout). They stay in it: each is made visible again when List
// returns, on every path.
func List(ctx context.Context, client SQSAPI, dlqURL string, limit int) ([]Letter, error) {
	var out []Letter
	err := walk(ctx, client, dlqURL, time.Now().Add(ListTimeout), func(l Letter) (bool, bool, error) {
		out = append(out, l)
		return false, limit > 0 && len(out) >= limit, nil
	})
	return out, err
}

// Find returns the DLQ's message with this id, if it is there; it stops
// walking as soon as it has it.
func Find(ctx context.Context, client SQSAPI, dlqURL, id string) (Letter, bool, error) {
	var found *Letter
	err := walk(ctx, client, dlqURL, time.Now().Add(ListTimeout), func(l Letter) (bool, bool, error) {
		if l.ID == id {
			found = &l
		}
		return false, found != nil, nil
	})
	if found == nil {
		return Letter{}, false, err
	}
	return *found, true, err
}

// visitFunc sees one message of a walk. consumed says it was deleted from
// the DLQ (else the walk makes it visible again at the end); stop ends the
// walk.
type visitFunc func(Letter) (consumed, stop bool, err error)

// walk receives the DLQ's messages and calls fn once per message id, until
// fn says stop, idleReceives receives in a row bring nothing new, or the
// deadline passes. Every message it received and fn did not consume is made
// visible again when it returns, whatever the path: those fn kept, those
// received again after their hold ran out, and the rest of a batch after
// fn stopped or failed.
func walk(ctx context.Context, client SQSAPI, dlqURL string, deadline time.Time, fn visitFunc) (err error) {
	seen := map[string]bool{}
	var held []string // receipt handles to hand back
	defer func() {
		if rerr := release(ctx, client, dlqURL, held); rerr != nil {
			err = errors.Join(err, rerr)
		}
	}()
	for idle := 0; idle < idleReceives; {
		if !time.Now().Before(deadline) {
			return fmt.Errorf("walk %s: %w after %d messages", dlqURL, ErrDeadline, len(seen))
		}
		msgs, err := receive(ctx, client, dlqURL)
		if err != nil {
			return err
		}
		fresh, stop := 0, false
		var fnErr error
		for _, m := range msgs {
			id, receipt := aws.ToString(m.MessageId), aws.ToString(m.ReceiptHandle)
			if stop || seen[id] {
				held = append(held, receipt)
				continue
			}
			seen[id] = true
			fresh++
			consumed, s, err := fn(letter(m))
			if !consumed {
				held = append(held, receipt)
			}
			stop, fnErr = s || err != nil, err
		}
		if fnErr != nil {
			return fnErr
		}
		if stop {
			return nil
		}
		if fresh == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	return nil
}

func receive(ctx context.Context, client SQSAPI, dlqURL string) ([]sqstypes.Message, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, VisibilityTimeout: holdFor, WaitTimeSeconds: receiveWait,
		MessageAttributeNames:       []string{"All"},
		MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameSentTimestamp},
	})
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dlqURL, err)
	}
	return out.Messages, nil
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
			l.SourceQueue = s
		default:
			l.Attributes[k] = s
		}
	}
	if ms, err := strconv.ParseInt(m.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		l.SentAt = time.UnixMilli(ms).UTC()
	}
	return l
}

// release makes the held messages visible again. A receipt SQS no longer
// knows (the message was received again, or deleted) has nothing to
// release; any other failure is returned: those messages come back when
// their hold runs out. It runs even when ctx was cancelled (the walk's
// deferred hand-back), bounded by its own timeout.
func release(ctx context.Context, client SQSAPI, url string, receipts []string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	var failed []string
	for start := 0; start < len(receipts); start += 10 {
		batch := receipts[start:min(start+10, len(receipts))]
		entries := make([]sqstypes.ChangeMessageVisibilityBatchRequestEntry, len(batch))
		for i, r := range batch {
			entries[i] = sqstypes.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r), VisibilityTimeout: 0}
		}
		out, err := client.ChangeMessageVisibilityBatch(ctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(url), Entries: entries})
		if err != nil {
			return fmt.Errorf("hand back %d messages to %s (they return within %d s): %w", len(receipts)-start, url, holdFor, err)
		}
		for _, f := range out.Failed {
			if !strings.HasSuffix(aws.ToString(f.Code), "ReceiptHandleIsInvalid") {
				failed = append(failed, aws.ToString(f.Code)+": "+aws.ToString(f.Message))
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("hand back messages to %s: %d failed (they return within %d s): %s", url, len(failed), holdFor, failed[0])
	}
	return nil
}
