package worker

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"strings"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (Config.TracerProvider set): every delivery gets a consumer span,
// "process <queue>", from just before its handler runs to its settlement
// (the delete queued, the DLQ copy sent, or the retry scheduled). It is the
// child of the W3C trace context the message's attributes carry
// (AttrTraceParent, AttrTraceState: the publisher's span), so one order's
// publish and its handlers' work are one trace; a message without them
// starts a trace of its own. The handler's context carries the span, so
// the handler's own spans are its children.
//
// A dead-lettered copy carries the trace context of this span in place of
// the one received, counted among the runtime's own attributes: SQS's
// limit of ten holds (see deadletter.go), and a redriven message joins the
// trace again, below the delivery that dead-lettered it.
//
// The log lines the runtime writes about a message carry trace_id and
// span_id of its span when it is sampled (a recorded trace).
//
// Without a TracerProvider none of this runs: no context is extracted and
// no attribute written; the trace context attributes are then ordinary
// attributes (a dead-lettered copy keeps them as received).

// W3C trace context in message attributes: the names of the HTTP headers.
const (
	AttrTraceParent = "traceparent"
	AttrTraceState  = "tracestate"
)

// Log keys of a message's trace, on the runtime's lines about it.
const (
	LogTraceID = "trace_id"
	LogSpanID  = "span_id"
)

const tracerName = "github.com/orderpipe/orderpipe/worker"

// propagator reads and writes W3C trace context (traceparent, tracestate).
var propagator = propagation.TraceContext{}

// startSpan starts m's consumer span as a child of the trace context its
// attributes carry; without a tracer it returns ctx and a nil span.
func (c *Consumer) startSpan(ctx context.Context, m *Message) (context.Context, trace.Span) {
	if c.tracer == nil {
		return ctx, nil
	}
	ctx = propagator.Extract(ctx, propagation.MapCarrier(m.Attributes))
	ctx, span := c.tracer.Start(ctx, "process "+c.queueName, trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			semconv.MessagingSystemAWSSQS, semconv.MessagingOperationTypeProcess, semconv.MessagingOperationName("process"),
			semconv.MessagingDestinationName(c.queueName), semconv.MessagingMessageID(m.ID),
			attribute.String("handler", c.cfg.Name), attribute.Int("receive_count", m.ReceiveCount),
		))
	if sc := span.SpanContext(); sc.IsSampled() {
		m.logAttrs = append(m.logAttrs, LogTraceID, sc.TraceID().String(), LogSpanID, sc.SpanID().String())
	}
	return ctx, span
}

// endSpan ends m's span with its outcome ("ok", "retry", "dead_letter",
// "interrupted") and what the handler annotated the message with; a
// failure's detail (the DLQ reason) goes into the status, never an
// error's text (it can carry what an event holds).
func endSpan(span trace.Span, m *Message, outcome, detail string) {
	if span == nil {
		return
	}
	attrs := append(annotations(m.logAttrs), attribute.String("outcome", outcome))
	if outcome != "ok" {
		desc := outcome
		if detail != "" {
			desc += ": " + detail
			attrs = append(attrs, attribute.String("outcome_reason", detail))
		}
		span.SetStatus(codes.Error, desc)
	}
	span.SetAttributes(attrs...)
	span.End()
}

// annotations returns the message's Annotate pairs (slog's key/value or
// slog.Attr arguments) as span attributes, the trace's own ids left out.
func annotations(kv []any) []attribute.KeyValue {
	var out []attribute.KeyValue
	for i := 0; i < len(kv); i++ {
		var a slog.Attr
		switch k := kv[i].(type) {
		case slog.Attr:
			a = k
		case string:
			if i+1 == len(kv) {
				return out
			}
			i++
			a = slog.Any(k, kv[i])
		default:
			continue
		}
		if a.Key != LogTraceID && a.Key != LogSpanID {
			out = append(out, attribute.String(a.Key, a.Value.String()))
		}
	}
	return out
}

// injectTrace writes the trace context of ctx's span into attrs (a
// dead-lettered copy's own attributes). Without a tracer it does nothing.
func (c *Consumer) injectTrace(ctx context.Context, attrs map[string]sqstypes.MessageAttributeValue) {
	if c.tracer != nil {
		propagator.Inject(ctx, sqsCarrier(attrs))
	}
}

// sqsCarrier is a propagation.TextMapCarrier over SQS message attributes.
type sqsCarrier map[string]sqstypes.MessageAttributeValue

func (c sqsCarrier) Get(key string) string {
	if v, ok := c[key]; ok && v.StringValue != nil {
		return *v.StringValue
	}
	return ""
}

func (c sqsCarrier) Set(key, value string) { c[key] = stringAttr(value) }

func (c sqsCarrier) Keys() []string { return slices.Collect(maps.Keys(c)) }

// queueName is the last segment of a queue URL.
func queueName(url string) string {
	return url[strings.LastIndex(url, "/")+1:]
}
