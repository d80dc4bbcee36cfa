package sqsfake

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// pollTick is how often a long poll looks again for messages whose
// visibility ran out (sends and visibility changes wake it at once).
const pollTick = 5 * time.Millisecond

// maxVisibility is the SQS cap on a visibility timeout.
const maxVisibility = 12 * time.Hour

// ReceiveMessage implements worker.SQSAPI.
func (f *Fake) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	out, err := f.receive(ctx, in)
	f.record(OpReceive, in, out, err)
	return out, err
}

func (f *Fake) receive(ctx context.Context, in *sqs.ReceiveMessageInput) (*sqs.ReceiveMessageOutput, error) {
	if err := f.before(ctx, OpReceive, in); err != nil {
		return nil, err
	}
	n := int(in.MaxNumberOfMessages)
	if n == 0 {
		n = 1
	}
	if n < 1 || n > 10 {
		return nil, invalidParameter("Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", n)
	}
	if in.WaitTimeSeconds < 0 || in.WaitTimeSeconds > 20 {
		return nil, invalidParameter("Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", in.WaitTimeSeconds)
	}
	wait := seconds(in.WaitTimeSeconds)
	if f.MaxLongPoll > 0 {
		wait = min(wait, f.MaxLongPoll)
	}
	deadline := time.Now().Add(wait)
	for {
		f.mu.Lock()
		q, err := f.queueLocked(in.QueueUrl)
		if err != nil {
			f.mu.Unlock()
			return nil, err
		}
		msgs := f.takeLocked(q, n, in)
		changed := f.changed
		f.mu.Unlock()
		if len(msgs) > 0 || !time.Now().Before(deadline) {
			return &sqs.ReceiveMessageOutput{Messages: msgs}, nil
		}
		t := time.NewTimer(min(time.Until(deadline), pollTick))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("operation error SQS: %s: %w", OpReceive, ctx.Err())
		case <-changed:
		case <-t.C:
		}
		t.Stop()
	}
}

// takeLocked receives up to n visible messages of q.
func (f *Fake) takeLocked(q *queue, n int, in *sqs.ReceiveMessageInput) []sqstypes.Message {
	visibility := q.visibility
	if in.VisibilityTimeout > 0 {
		visibility = seconds(in.VisibilityTimeout)
	}
	now := time.Now()
	var out []sqstypes.Message
	for _, m := range q.msgs {
		if len(out) == n {
			break
		}
		if m.Deleted || now.Before(m.VisibleAt) {
			continue
		}
		f.seq++
		m.ReceiveCount++
		m.Receipt = fmt.Sprintf("rh-%s-%d-%d", m.ID, m.ReceiveCount, f.seq)
		m.VisibleAt = now.Add(visibility)
		q.receipts[m.Receipt] = m
		out = append(out, received(m, in))
	}
	return out
}

// received is m as a receive returns it, with the attributes asked for.
func received(m *Message, in *sqs.ReceiveMessageInput) sqstypes.Message {
	out := sqstypes.Message{MessageId: aws.String(m.ID), ReceiptHandle: aws.String(m.Receipt), Body: aws.String(m.Body),
		Attributes: map[string]string{}}
	all := slices.Contains(in.MessageAttributeNames, "All") || slices.Contains(in.MessageAttributeNames, ".*")
	for name, v := range m.Attributes {
		if all || slices.Contains(in.MessageAttributeNames, name) {
			if out.MessageAttributes == nil {
				out.MessageAttributes = map[string]sqstypes.MessageAttributeValue{}
			}
			out.MessageAttributes[name] = v
		}
	}
	for _, name := range in.MessageSystemAttributeNames {
		// The fake keeps only the two attributes the runtime reads.
		all := name == sqstypes.MessageSystemAttributeNameAll
		if all || name == sqstypes.MessageSystemAttributeNameApproximateReceiveCount {
			out.Attributes[string(sqstypes.MessageSystemAttributeNameApproximateReceiveCount)] = strconv.Itoa(m.ReceiveCount)
		}
		if all || name == sqstypes.MessageSystemAttributeNameSentTimestamp {
			out.Attributes[string(sqstypes.MessageSystemAttributeNameSentTimestamp)] = strconv.FormatInt(m.SentAt.UnixMilli(), 10)
		}
	}
	return out
}

// DeleteMessageBatch implements worker.SQSAPI.
func (f *Fake) DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out, err := f.deleteBatch(ctx, in)
	f.record(OpDeleteBatch, in, out, err)
	return out, err
}

func (f *Fake) deleteBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput) (*sqs.DeleteMessageBatchOutput, error) {
	if err := f.before(ctx, OpDeleteBatch, in); err != nil {
		return nil, err
	}
	ids := make([]*string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queueLocked(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	out := &sqs.DeleteMessageBatchOutput{}
	for _, e := range in.Entries {
		receipt := aws.ToString(e.ReceiptHandle)
		code := f.entryCodeLocked(OpDeleteBatch, q, receipt)
		if code != "" {
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String(code), SenderFault: true, Message: aws.String(code)})
			continue
		}
		if m := q.receipts[receipt]; m.Receipt == receipt {
			m.Deleted = true // a stale receipt deletes nothing, yet succeeds
		}
		out.Successful = append(out.Successful, sqstypes.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

// entryCodeLocked returns the error code a batch entry fails with: an
// injected one, or ReceiptHandleIsInvalid for a receipt never handed out.
func (f *Fake) entryCodeLocked(op Op, q *queue, receipt string) string {
	if f.entryFail != nil {
		if code := f.entryFail(op, receipt); code != "" {
			return code
		}
	}
	if q.receipts[receipt] == nil {
		return "ReceiptHandleIsInvalid"
	}
	return ""
}

// checkBatch applies SQS's rules on a batch's entry ids.
func checkBatch(ids []*string) error {
	switch {
	case len(ids) == 0:
		return &sqstypes.EmptyBatchRequest{Message: aws.String("There should be at least one entry in the request.")}
	case len(ids) > 10:
		return &sqstypes.TooManyEntriesInBatchRequest{Message: aws.String(fmt.Sprintf("Maximum number of entries per request are 10. You have sent %d.", len(ids)))}
	}
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[aws.ToString(id)] {
			return &sqstypes.BatchEntryIdsNotDistinct{Message: aws.String("Id " + aws.ToString(id) + " repeated.")}
		}
		seen[aws.ToString(id)] = true
	}
	return nil
}

// ChangeMessageVisibility implements worker.SQSAPI.
func (f *Fake) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	err := f.changeVisibility(ctx, in)
	var out *sqs.ChangeMessageVisibilityOutput
	if err == nil {
		out = &sqs.ChangeMessageVisibilityOutput{}
	}
	f.record(OpChangeVisibility, in, out, err)
	return out, err
}

func (f *Fake) changeVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput) error {
	if err := f.before(ctx, OpChangeVisibility, in); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queueLocked(in.QueueUrl)
	if err != nil {
		return err
	}
	return setVisibility(q, aws.ToString(in.ReceiptHandle), in.VisibilityTimeout)
}

// setVisibility applies one visibility change, with SQS's errors.
func setVisibility(q *queue, receipt string, timeout int32) error {
	if timeout < 0 || seconds(timeout) > maxVisibility {
		return invalidParameter("Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200.", timeout)
	}
	m := q.receipts[receipt]
	if m == nil {
		return &sqstypes.ReceiptHandleIsInvalid{Message: aws.String("The input receipt handle is invalid.")}
	}
	now := time.Now()
	if !inFlight(m, receipt, now) {
		return &sqstypes.MessageNotInflight{}
	}
	m.VisibleAt = now.Add(seconds(timeout))
	return nil
}

// ChangeMessageVisibilityBatch implements worker.SQSAPI.
func (f *Fake) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	out, err := f.changeVisibilityBatch(ctx, in)
	f.record(OpChangeVisibilityBatch, in, out, err)
	return out, err
}

func (f *Fake) changeVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	if err := f.before(ctx, OpChangeVisibilityBatch, in); err != nil {
		return nil, err
	}
	ids := make([]*string, len(in.Entries))
	for i, e := range in.Entries {
		ids[i] = e.Id
	}
	if err := checkBatch(ids); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	q, err := f.queueLocked(in.QueueUrl)
	if err != nil {
		return nil, err
	}
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		receipt := aws.ToString(e.ReceiptHandle)
		code := f.entryCodeLocked(OpChangeVisibilityBatch, q, receipt)
		if code == "" {
			if err := setVisibility(q, receipt, e.VisibilityTimeout); err != nil {
				code = errorCode(err)
			}
		}
		if code != "" {
			out.Failed = append(out.Failed, sqstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String(code), SenderFault: true, Message: aws.String(code)})
			continue
		}
		out.Successful = append(out.Successful, sqstypes.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func errorCode(err error) string {
	if c, ok := err.(interface{ ErrorCode() string }); ok {
		return c.ErrorCode()
	}
	return err.Error()
}
