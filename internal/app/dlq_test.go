package app_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/worker"
)

// TestBadMessagesAreDeadLetteredAndTheWorkerGoesOn publishes messages that
// can never succeed to the topic, then a good order: each bad one lands in
// every subscribed queue's DLQ with its reason, nothing is lost, and the good
// order is processed by the same worker.
func TestBadMessagesAreDeadLetteredAndTheWorkerGoesOn(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 10})
	s.startWorker(t)

	bad := []struct {
		body   string
		reason events.Reason
	}{
		{`not json at all`, events.ReasonMalformedJSON},
		{`{"event_id": "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", "schema_version": 2}`, events.ReasonUnsupportedVersion},
		{mustJSON(t, s.withQuantity(s.placed("q0", "", "MUG", 1), 0)), events.ReasonInvalidField},
		{strings.Replace(mustJSON(t, s.placed("q1", "", "MUG", 1)), `"order.placed"`, `"order.refunded"`, 1), events.ReasonUnknownType},
		{strings.Replace(mustJSON(t, s.placed("q2", "", "MUG", 1)), `"currency":"USD",`, ``, 1), events.ReasonMissingField},
		{`{"event_id":"6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10","pad":"` + strings.Repeat("x", events.MaxEventBytes) + `"}`, events.ReasonTooLarge},
	}
	var raw []events.RawMessage
	for _, b := range bad {
		raw = append(raw, events.RawMessage{Body: b.body, EventType: string(events.OrderPlaced), SchemaVersion: 1})
	}
	if _, err := s.pub.PublishRaw(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	s.publish(t, s.placed("unknown-sku", "", "NOPE", 1)) // valid contract, but no such product
	good := s.placed("good", "", "MUG", 1)
	s.publish(t, good)
	s.waitProcessed(t, all3(1), 1)

	want := []string{string(events.ReasonUnknownSKU)}
	for _, b := range bad {
		want = append(want, string(b.reason))
	}
	slices.Sort(want)
	sqsc := sqs.NewFromConfig(s.env.AWS)
	for handler, q := range s.ap.Queues {
		got := drainReasons(t, sqsc, q.DLQURL, len(want))
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s DLQ reasons (-want +got):\n%s", handler, diff)
		}
	}
}

func (s *stack) withQuantity(ev events.Event, q int) events.Event {
	ev.Order.Items[0].Quantity = q
	return ev
}

func mustJSON(t *testing.T, ev events.Event) string {
	t.Helper()
	ev.Order.Items = slices.Clone(ev.Order.Items)
	b, err := jsonMarshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// drainReasons receives n messages from a DLQ, deletes them and returns
// their dead-letter reasons, sorted. It receives with a visibility timeout
// of 1 s (the SDK sends no 0, so 0 would mean the queue's 30 s) and counts
// each message once by its id, so a receive whose response is lost hides
// messages for a second only.
func drainReasons(t *testing.T, sqsc *sqs.Client, url string, n int) []string {
	t.Helper()
	ctx := context.Background()
	seen := map[string]string{} // message id → reason
	testenv.Eventually(t, 30*time.Second, func() error {
		out, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return err
		}
		for _, m := range out.Messages {
			seen[aws.ToString(m.MessageId)] = attr(m, worker.AttrDLQReason)
			_, _ = sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle})
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d dead letters so far: %v; %s", len(seen), n, slices.Sorted(maps.Values(seen)), queueDepth(ctx, sqsc, url))
		}
		return nil
	})
	return slices.Sorted(maps.Values(seen))
}

// queueDepth describes a queue's approximate depth, for failure messages.
func queueDepth(ctx context.Context, sqsc *sqs.Client, url string) string {
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages, sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible},
	})
	if err != nil {
		return fmt.Sprintf("queue depth unknown: %v", err)
	}
	return fmt.Sprintf("queue holds %s visible, %s in flight",
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)],
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)])
}

func attr(m sqstypes.Message, name string) string {
	if v, ok := m.MessageAttributes[name]; ok {
		return aws.ToString(v.StringValue)
	}
	return ""
}
