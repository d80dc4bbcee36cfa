package events

import (
	"context"
	"maps"
	"slices"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (PublisherConfig.TracerProvider set): every message gets a
// producer span, "publish <topic>", from before its PublishBatch to the
// batch's outcome (retries included), and the span's W3C trace context
// goes into the message's attributes. The topology subscribes the queues
// with raw message delivery, so SNS hands these attributes to SQS as
// message attributes of the same names, where the worker's runtime reads
// them (worker.AttrTraceParent).

// The W3C trace context attributes (the HTTP header names; the worker's
// runtime reads the same).
const (
	AttrTraceParent = "traceparent"
	AttrTraceState  = "tracestate"
)

// A message carries at most four attributes: event_type, schema_version,
// traceparent and tracestate. SNS drops (as a client error) a message with
// more than ten delivered raw to SQS, whose own limit is ten; four leave a
// dead-lettered copy room for the runtime's own six (its four reasons and
// its own trace context) with nothing folded.

const tracerName = "github.com/orderpipe/orderpipe/events"

var propagator = propagation.TraceContext{}

// entry is one message ready for PublishBatch: its attributes, and its
// span when tracing.
type entry struct {
	msg   RawMessage
	attrs map[string]snstypes.MessageAttributeValue
	span  trace.Span
}

// entry prepares m: its attributes and, when tracing, its producer span
// (the child of m.TraceContext, or of ctx's span) with its trace context
// among the attributes.
func (p *Publisher) entry(ctx context.Context, m RawMessage) entry {
	e := entry{msg: m, attrs: messageAttributes(m)}
	if p.tracer == nil {
		return e
	}
	if len(m.TraceContext) > 0 {
		ctx = propagator.Extract(ctx, propagation.MapCarrier(m.TraceContext))
	}
	attrs := []attribute.KeyValue{
		semconv.MessagingSystemAWSSNS, semconv.MessagingOperationTypeSend, semconv.MessagingOperationName("publish"),
		semconv.MessagingDestinationName(p.topic),
	}
	for k, v := range map[string]string{"event_type": m.EventType, "event_id": m.EventID, "order_id": m.OrderID} {
		if v != "" {
			attrs = append(attrs, attribute.String(k, v))
		}
	}
	ctx, e.span = p.tracer.Start(ctx, "publish "+p.topic, //nolint:spancheck // ended with its batch's outcome: endSpans, failSpans
		trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	propagator.Inject(ctx, snsCarrier(e.attrs))
	return e
}

// sent notes the message id SNS gave the entry.
func (e entry) sent(messageID string) {
	if e.span != nil {
		e.span.SetAttributes(semconv.MessagingMessageID(messageID))
	}
}

// endSpans ends the spans of a batch (indexed as its entries' ids); those
// still in unsent are failures.
func endSpans(batch []entry, unsent map[string]entry) {
	for i, e := range batch {
		if e.span == nil {
			continue
		}
		if _, failed := unsent[strconv.Itoa(i)]; failed {
			e.span.SetStatus(codes.Error, "not published")
		}
		e.span.End()
	}
}

// failSpans ends the spans of entries never sent.
func failSpans(entries []entry) {
	for _, e := range entries {
		if e.span != nil {
			e.span.SetStatus(codes.Error, "not published")
			e.span.End()
		}
	}
}

// snsCarrier is a propagation.TextMapCarrier over SNS message attributes.
type snsCarrier map[string]snstypes.MessageAttributeValue

func (c snsCarrier) Get(key string) string {
	if v, ok := c[key]; ok {
		return aws.ToString(v.StringValue)
	}
	return ""
}

func (c snsCarrier) Set(key, value string) {
	c[key] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(value)}
}

func (c snsCarrier) Keys() []string { return slices.Collect(maps.Keys(c)) }
