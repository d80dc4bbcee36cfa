package events_test

import (
	"context"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/events"
)

// fakeSNS accepts every entry but those whose body is "fail" (a sender
// fault), and keeps what it was sent.
type fakeSNS struct {
	mu      sync.Mutex
	entries []snstypes.PublishBatchRequestEntry
}

func (f *fakeSNS) PublishBatch(_ context.Context, in *sns.PublishBatchInput, _ ...func(*sns.Options)) (*sns.PublishBatchOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &sns.PublishBatchOutput{}
	for _, e := range in.PublishBatchRequestEntries {
		f.entries = append(f.entries, e)
		if aws.ToString(e.Message) == "fail" {
			out.Failed = append(out.Failed, snstypes.BatchResultErrorEntry{Id: e.Id, Code: aws.String("InvalidParameter"), SenderFault: true})
			continue
		}
		out.Successful = append(out.Successful, snstypes.PublishBatchResultEntry{Id: e.Id, MessageId: aws.String("sns-" + strconv.Itoa(len(f.entries)))})
	}
	return out, nil
}

func (f *fakeSNS) sent(body string) snstypes.PublishBatchRequestEntry {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.entries {
		if aws.ToString(e.Message) == body {
			return e
		}
	}
	return snstypes.PublishBatchRequestEntry{}
}

func traceAttr(e snstypes.PublishBatchRequestEntry) string {
	return aws.ToString(e.MessageAttributes[events.AttrTraceParent].StringValue)
}

func spanByOrder(t *testing.T, exp *tracetest.InMemoryExporter, orderID string) tracetest.SpanStub {
	t.Helper()
	for _, s := range exp.GetSpans() {
		for _, a := range s.Attributes {
			if a.Key == "order_id" && a.Value.AsString() == orderID {
				return s
			}
		}
	}
	t.Fatalf("no span for order %s among %d", orderID, len(exp.GetSpans()))
	return tracetest.SpanStub{}
}

// TestPublishCarriesEachMessagesTraceContext: with tracing on, every
// message gets a producer span of its own (each order its own trace) and
// its traceparent attribute names that span; a message SNS refused ends
// its span in error. A raw message with a stored trace context (the
// outbox's) is published as the child of that context. Every message
// carries at most four attributes.
func TestPublishCarriesEachMessagesTraceContext(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	f := &fakeSNS{}
	pub, err := events.NewPublisher(f, events.PublisherConfig{TopicARN: "arn:aws:sns:us-east-1:000000000000:orders", TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	const stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	msgs := []events.RawMessage{
		{Body: "a", EventType: "order.placed", SchemaVersion: 1, OrderID: "ord-a"},
		{Body: "b", EventType: "order.placed", SchemaVersion: 1, OrderID: "ord-b"},
		{Body: "c", EventType: "order.cancelled", SchemaVersion: 1, OrderID: "ord-c",
			TraceContext: map[string]string{events.AttrTraceParent: stored, events.AttrTraceState: "k=v"}},
		{Body: "fail", EventType: "order.placed", SchemaVersion: 1, OrderID: "ord-f"},
	}
	if n, err := pub.PublishRaw(context.Background(), msgs); n != 0 || err == nil {
		t.Fatalf("published %d with err %v; want the batch with a refused entry to fail", n, err)
	}
	a, b := spanByOrder(t, exp, "ord-a"), spanByOrder(t, exp, "ord-b")
	if a.SpanContext.TraceID() == b.SpanContext.TraceID() || a.Parent.IsValid() {
		t.Errorf("two orders published without a parent share trace %s (parent %v): want a trace each", a.SpanContext.TraceID(), a.Parent)
	}
	for _, s := range []tracetest.SpanStub{a, b} {
		if s.SpanKind != trace.SpanKindProducer || s.Name != "publish orders" {
			t.Errorf("span %q kind %v, want \"publish orders\", producer", s.Name, s.SpanKind)
		}
	}
	if got, want := traceAttr(f.sent("a")), "00-"+a.SpanContext.TraceID().String()+"-"+a.SpanContext.SpanID().String()+"-01"; got != want {
		t.Errorf("message a's traceparent %q, want its span's %q", got, want)
	}
	c := spanByOrder(t, exp, "ord-c")
	if c.Parent.TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" || c.Parent.SpanID().String() != "00f067aa0ba902b7" {
		t.Errorf("the outbox message's span has parent %v, want the stored trace context", c.Parent)
	}
	if ts := aws.ToString(f.sent("c").MessageAttributes[events.AttrTraceState].StringValue); ts != "k=v" {
		t.Errorf("the outbox message's tracestate %q, want k=v", ts)
	}
	if fs := spanByOrder(t, exp, "ord-f"); fs.Status.Code != codes.Error {
		t.Errorf("the refused message's span status %v, want an error", fs.Status)
	}
	if ac := a.Status.Code; ac == codes.Error {
		t.Errorf("an accepted message's span status %v", a.Status)
	}
	for _, body := range []string{"a", "b", "c", "fail"} {
		if n := len(f.sent(body).MessageAttributes); n > 4 {
			t.Errorf("message %s carries %d attributes, want at most 4", body, n)
		}
	}
}

// TestPublishWithoutTracingAddsNoAttribute: tracing off, even a stored
// trace context is not written: a message carries event_type and
// schema_version only.
func TestPublishWithoutTracingAddsNoAttribute(t *testing.T) {
	f := &fakeSNS{}
	pub, err := events.NewPublisher(f, events.PublisherConfig{TopicARN: "arn:aws:sns:us-east-1:000000000000:orders"})
	if err != nil {
		t.Fatal(err)
	}
	msg := events.RawMessage{Body: "a", EventType: "order.placed", SchemaVersion: 1,
		TraceContext: map[string]string{events.AttrTraceParent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}
	if _, err := pub.PublishRaw(context.Background(), []events.RawMessage{msg}); err != nil {
		t.Fatal(err)
	}
	if got := f.sent("a").MessageAttributes; len(got) != 2 || traceAttr(f.sent("a")) != "" {
		t.Errorf("attributes %v, want event_type and schema_version only", got)
	}
}
