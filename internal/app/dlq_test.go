package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/worker"
)

// TestBadMessagesAreDeadLetteredAndTheWorkerGoesOn publishes messages that
// can never succeed to the topic, then a good order: each bad one lands in
// every subscribed queue's DLQ on its first receive, with its reason, an
// error naming what was wrong, its source queue and its receive count;
// nothing is lost, and the good order is processed by the same worker.
func TestBadMessagesAreDeadLetteredAndTheWorkerGoesOn(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 10})
	s.startWorker(t)

	withName := func(ev events.Event, name string) events.Event { ev.Order.Customer.Name = name; return ev }
	withID := func(ev events.Event, id string) events.Event { ev.EventID = events.EventID(id); return ev }
	unknownSKU := s.placed("unknown-sku", "", "NOPE", 1) // valid contract, but no such product
	unknownBody, err := events.Encode(unknownSKU)
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		name      string
		body      string
		eventType events.Type // the message attribute, which routes it
		reason    events.Reason
		mentions  string // what the orderpipe_dlq_error attribute must name
	}{
		{"not JSON", `not json at all`, events.OrderPlaced, events.ReasonMalformedJSON, "malformed_json"},
		{"schema version 2", `{"event_id": "6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10", "schema_version": 2}`, events.OrderPlaced, events.ReasonUnsupportedVersion, "schema_version"},
		{"quantity 0", mustJSON(t, s.withQuantity(s.placed("q0", "", "MUG", 1), 0)), events.OrderPlaced, events.ReasonInvalidField, "order.items[0].quantity"},
		{"unknown event type", strings.Replace(mustJSON(t, s.placed("q1", "", "MUG", 1)), `"order.placed"`, `"order.refunded"`, 1), events.OrderPlaced, events.ReasonUnknownType, "event_type"},
		{"no currency", strings.Replace(mustJSON(t, s.placed("q2", "", "MUG", 1)), `"currency":"USD",`, ``, 1), events.OrderPlaced, events.ReasonMissingField, "order.currency"},
		{"over 64 KiB", `{"event_id":"6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10","pad":"` + strings.Repeat("x", events.MaxEventBytes) + `"}`, events.OrderPlaced, events.ReasonTooLarge, "too_large"},
		{"a cancellation reason in free text", mustJSON(t, cancelled(s.placed("q3", "", "MUG", 1), `<a href="https://evil.example">refund</a>`)), events.OrderCancelled, events.ReasonInvalidField, "reason"},
		{"an escape sequence in the customer's name", mustJSON(t, withName(s.placed("q4", "", "MUG", 1), "Ada\x1b[2J\x1b[H")), events.OrderPlaced, events.ReasonInvalidField, "order.customer.name"},
		{"an event_id as a URN", mustJSON(t, withID(s.placed("q5", "", "MUG", 1), "urn:uuid:6f1c2b1e-4a8e-4a47-9a55-0d0b8f1f2a10")), events.OrderPlaced, events.ReasonInvalidField, "event_id"},
		{"an unknown SKU", string(unknownBody), events.OrderPlaced, events.ReasonUnknownSKU, string(unknownSKU.Order.Items[0].SKU)},
	}
	var raw []events.RawMessage
	for _, b := range bad {
		raw = append(raw, events.RawMessage{Body: b.body, EventType: string(b.eventType), SchemaVersion: 1})
	}
	if _, err := s.pub.PublishRaw(context.Background(), raw); err != nil {
		t.Fatal(err)
	}
	good := s.placed("good", "", "MUG", 1)
	s.publish(t, good)
	s.waitProcessed(t, all3(1), 1)

	sqsc := sqs.NewFromConfig(s.env.AWS)
	for _, q := range s.ap.Queues {
		byBody := map[string]deadLetter{}
		for _, l := range drainLetters(t, sqsc, q.DLQURL, q.URL, len(bad)) {
			byBody[l.body] = l
		}
		for _, b := range bad {
			t.Run(q.Handler+"/"+b.name, func(t *testing.T) {
				l, ok := byBody[b.body]
				if !ok {
					t.Fatalf("not in the %s DLQ", q.Handler)
				}
				if got := l.attrs[worker.AttrDLQReason]; got != string(b.reason) {
					t.Errorf("%s = %q, want %q", worker.AttrDLQReason, got, b.reason)
				}
				if got := l.attrs[worker.AttrDLQError]; !strings.Contains(got, b.mentions) || strings.ContainsFunc(got, unicode.IsControl) {
					t.Errorf("%s = %q, want it to name %q, without control characters", worker.AttrDLQError, got, b.mentions)
				}
				if got := l.attrs[worker.AttrDLQSourceQueue]; got != q.URL {
					t.Errorf("%s = %q, want %q", worker.AttrDLQSourceQueue, got, q.URL)
				}
				if got := l.attrs[worker.AttrDLQReceiveCount]; got != "1" {
					t.Errorf("%s = %q, want 1 (dead-lettered on its first receive)", worker.AttrDLQReceiveCount, got)
				}
			})
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

// deadLetter is a message read from a DLQ.
type deadLetter struct {
	body  string
	attrs map[string]string
}

// drainReasons receives n messages from a DLQ, deletes them and returns
// their dead-letter reasons, sorted.
func drainReasons(t *testing.T, sqsc *sqs.Client, url string, n int) []string {
	t.Helper()
	var reasons []string
	for _, l := range drainLetters(t, sqsc, url, "", n) {
		reasons = append(reasons, l.attrs[worker.AttrDLQReason])
	}
	slices.Sort(reasons)
	return reasons
}

// drainLetters receives n messages from a DLQ, deletes them and returns
// them by message id. It is the only reader of the DLQ. It receives with a
// visibility timeout of 1 s (the SDK sends no 0, so 0 would mean the queue's
// 30 s) and counts each message once by its id, so a receive whose response
// never reaches it (the SDK retries a receive whose response was cut off;
// the emulator has already hidden what it sent) hides messages for a second
// only, not for longer than the whole wait. If they do not all come, the
// failure says how deep the DLQ and the source queue (if given) are, and
// the in-process worker's warnings (startWorker) say what it did with them.
func drainLetters(t *testing.T, sqsc *sqs.Client, dlqURL, sourceURL string, n int) map[string]deadLetter {
	t.Helper()
	ctx := context.Background()
	seen := map[string]deadLetter{}
	testenv.Eventually(t, 30*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := sqsc.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return fmt.Errorf("receive from %s: %w", dlqURL, err)
		}
		for _, m := range out.Messages {
			l := deadLetter{body: aws.ToString(m.Body), attrs: map[string]string{}}
			for k, v := range m.MessageAttributes {
				l.attrs[k] = aws.ToString(v.StringValue)
			}
			seen[aws.ToString(m.MessageId)] = l
			_, _ = sqsc.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: m.ReceiptHandle})
		}
		if len(seen) < n {
			var reasons []string
			for _, l := range seen {
				reasons = append(reasons, l.attrs[worker.AttrDLQReason])
			}
			slices.Sort(reasons)
			where := "DLQ: " + queueDepth(ctx, sqsc, dlqURL)
			if sourceURL != "" {
				where += "; source queue: " + queueDepth(ctx, sqsc, sourceURL)
			}
			return fmt.Errorf("%d of %d dead letters so far: %v; %s", len(seen), n, reasons, where)
		}
		return nil
	})
	return seen
}

// queueDepth describes a queue's approximate depth, for failure messages.
func queueDepth(ctx context.Context, sqsc *sqs.Client, url string) string {
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages,
			sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible, sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed},
	})
	if err != nil {
		return fmt.Sprintf("depth unknown: %v", err)
	}
	return fmt.Sprintf("%s visible, %s in flight, %s delayed",
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessages)],
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible)],
		out.Attributes[string(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)])
}
