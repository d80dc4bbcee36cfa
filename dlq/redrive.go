package dlq

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/worker"
)

// RedriveConfig says which dead letters go back to their queue, and bounds
// the walk.
//
// A redrive sends back only the messages the DLQ held when it began. While
// workers run, a message that still fails is dead-lettered again within
// milliseconds under a new message id; without a bound the walk would meet
// it as a message it has not seen and send it back again, for ever. Three
// bounds keep it finite:
//
//   - a message whose SentTimestamp (SQS's clock) is after the start of the
//     redrive (this host's clock) is left in the DLQ and counted in
//     RedriveResult.Newer;
//   - because those two clocks can disagree, at most the DLQ's depth at the
//     start (ApproximateNumberOfMessages + NotVisible + Delayed) plus a
//     margin are sent back;
//   - the whole walk ends after Timeout.
type RedriveConfig struct {
	// DLQURL is the queue redriven from. Required.
	DLQURL string
	// SourceURL is the queue the messages go back to. Required.
	SourceURL string
	// MatchFunc picks the messages to send back. Defaults to all.
	MatchFunc func(Letter) bool
	// Max stops the redrive after this many (1 for a redrive by id).
	// Defaults to no limit but the bounds above.
	Max int
	// RedrivenFunc, if set, is called after each message was sent back and
	// deleted from the DLQ, with the message id of its copy.
	RedrivenFunc func(l Letter, newID string)
	// Timeout bounds the whole redrive. Defaults to RedriveTimeoutDefault.
	Timeout time.Duration
	// Margin is added to the DLQ's depth at the start, and so is a tenth
	// of that depth, to bound how many messages are sent back. Defaults to
	// RedriveMarginDefault.
	Margin int
	// NowFunc is this host's clock, read once for the start that
	// SentTimestamps are compared with. Defaults to time.Now. (Timeout is
	// measured on the monotonic clock.)
	NowFunc func() time.Time
	// NotBefore, if set, refuses the letters whose event is older
	// (Letter.EventTime): they stay in the DLQ, are counted in
	// RedriveResult.Refused and passed to RefusedFunc. orderctl sets it
	// from LEDGER_RETENTION: the copy of an event that old could reach a
	// handler after the event's ledger rows were removed, and be applied
	// again.
	NotBefore time.Time
	// RefusedFunc, if set, is called with each letter NotBefore refused.
	RefusedFunc func(Refusal)
}

func (c *RedriveConfig) setDefaults() {
	if c.Timeout <= 0 {
		c.Timeout = RedriveTimeoutDefault
	}
	if c.Margin <= 0 {
		c.Margin = RedriveMarginDefault
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
}

// Validate names the first bad field.
func (c *RedriveConfig) Validate() error {
	switch {
	case c.DLQURL == "":
		return errors.New("dlq: RedriveConfig.DLQURL is required")
	case c.SourceURL == "":
		return errors.New("dlq: RedriveConfig.SourceURL is required")
	case c.Max < 0:
		return fmt.Errorf("dlq: RedriveConfig.Max is %d, want 0 (no limit) or more", c.Max)
	}
	return nil
}

// Why a redrive stopped before it had seen the whole DLQ.
const (
	StoppedMax   = "max"   // RedriveConfig.Max were sent back
	StoppedBound = "bound" // the depth at the start plus the margin were sent back
)

// RedriveResult says what a redrive did.
type RedriveResult struct {
	// Redriven counts the messages sent back and deleted from the DLQ.
	Redriven int
	// Newer counts the matching messages left in the DLQ because they were
	// dead-lettered after the redrive began: among them, those it sent back
	// that failed again.
	Newer int
	// AtStart is the DLQ's approximate depth when the redrive began, and
	// Bound the most it would send back.
	AtStart, Bound int
	// Stopped is StoppedMax or StoppedBound when the redrive ended for that
	// reason, else empty.
	Stopped string
	// Refused counts the matching letters left in the DLQ because their
	// event is older than RedriveConfig.NotBefore.
	Refused int
}

// Redrive sends the DLQ's messages that match back to sourceURL, within
// the bounds of RedriveConfig's defaults, and returns how many it moved. It
// is an error to stop at the bound: see RedriveWith.
func Redrive(ctx context.Context, client SQSAPI, dlqURL, sourceURL string, match func(Letter) bool) (int, error) {
	res, err := RedriveWith(ctx, client, RedriveConfig{DLQURL: dlqURL, SourceURL: sourceURL, MatchFunc: match})
	if err == nil && res.Stopped == StoppedBound {
		err = fmt.Errorf("redrive %s: stopped after %d messages, the DLQ's depth at the start (%d) plus the margin", dlqURL, res.Redriven, res.AtStart)
	}
	return res.Redriven, err
}

// RedriveWith sends the matching messages the DLQ held when it began back
// to their queue, with their own attributes (the orderpipe_dlq_* ones
// dropped), and deletes each from the DLQ only after its copy was sent: a
// failure between the two leaves a duplicate, which the worker's idempotency
// absorbs, never a loss. A walk that runs out of Timeout returns what it
// did and an error wrapping ErrDeadline.
func RedriveWith(ctx context.Context, client SQSAPI, cfg RedriveConfig) (RedriveResult, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return RedriveResult{}, err
	}
	deadline := time.Now().Add(cfg.Timeout)
	// SentTimestamp has millisecond precision: a message sent earlier in
	// the millisecond of the start is not after it.
	cutoff := cfg.NowFunc().Truncate(time.Millisecond)
	var res RedriveResult
	var err error
	if res.AtStart, err = depth(ctx, client, cfg.DLQURL); err != nil {
		return res, err
	}
	res.Bound = res.AtStart + cfg.Margin + res.AtStart/10
	err = walk(ctx, client, cfg.DLQURL, deadline, func(l Letter) (bool, bool, error) {
		if cfg.MatchFunc != nil && !cfg.MatchFunc(l) {
			return false, false, nil
		}
		if l.SentAt.After(cutoff) {
			res.Newer++
			return false, false, nil
		}
		if id, at := l.EventTime(); !cfg.NotBefore.IsZero() && at.Before(cfg.NotBefore) {
			res.Refused++
			if cfg.RefusedFunc != nil {
				cfg.RefusedFunc(Refusal{ID: l.ID, EventID: id, At: at})
			}
			return false, cfg.Max == 1, nil // a redrive of one letter (by id) found it
		}
		newID, consumed, err := sendBack(ctx, client, cfg, l)
		if err != nil {
			return consumed, true, err
		}
		res.Redriven++
		if cfg.RedrivenFunc != nil {
			cfg.RedrivenFunc(l, newID)
		}
		switch {
		case cfg.Max > 0 && res.Redriven >= cfg.Max:
			res.Stopped = StoppedMax
		case res.Redriven >= res.Bound:
			res.Stopped = StoppedBound
		}
		return true, res.Stopped != "", nil
	})
	return res, err
}

// sendBack sends l to the source queue, then deletes it from the DLQ. It
// returns the copy's message id and whether l left the DLQ.
func sendBack(ctx context.Context, client SQSAPI, cfg RedriveConfig, l Letter) (string, bool, error) {
	attrs, err := originalAttributes(l)
	if err != nil {
		return "", false, fmt.Errorf("redrive %s: %w", Printable(l.ID), err)
	}
	sctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	out, err := client.SendMessage(sctx, &sqs.SendMessageInput{
		QueueUrl: aws.String(cfg.SourceURL), MessageBody: aws.String(l.Body), MessageAttributes: attrs,
	})
	if err != nil {
		return "", false, fmt.Errorf("redrive %s: send to %s: %w", Printable(l.ID), cfg.SourceURL, err)
	}
	dctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if _, err := client.DeleteMessage(dctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(cfg.DLQURL), ReceiptHandle: aws.String(l.receipt)}); err != nil {
		return "", true, fmt.Errorf("redrive %s: sent, but not deleted from the DLQ (a duplicate the worker will absorb): %w", Printable(l.ID), err)
	}
	return aws.ToString(out.MessageId), true, nil
}

// originalAttributes are the attributes the message had before it was
// dead-lettered: its own, without the runtime's orderpipe_dlq_* ones, plus
// those the runtime folded into orderpipe_dlq_dropped_attributes to keep
// within SQS's ten.
func originalAttributes(l Letter) (map[string]sqstypes.MessageAttributeValue, error) {
	attrs := map[string]sqstypes.MessageAttributeValue{}
	for k, v := range l.attrs {
		if !strings.HasPrefix(k, "orderpipe_dlq_") {
			attrs[k] = v
		}
	}
	folded, ok := l.attrs[worker.AttrDLQDroppedAttributes]
	if !ok {
		return attrs, nil
	}
	dropped, err := worker.DroppedAttributes(aws.ToString(folded.StringValue))
	if err != nil {
		return nil, err
	}
	maps.Copy(attrs, dropped)
	return attrs, nil
}

// depth returns how many messages the queue holds: visible, in flight and
// delayed.
func depth(ctx context.Context, client SQSAPI, url string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	names := []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return 0, fmt.Errorf("depth of %s: %w", url, err)
	}
	total := 0
	for _, n := range names {
		v, err := strconv.Atoi(out.Attributes[string(n)])
		if err != nil {
			return 0, fmt.Errorf("depth of %s: %s is %q: %w", url, n, out.Attributes[string(n)], err)
		}
		total += v
	}
	return total, nil
}
