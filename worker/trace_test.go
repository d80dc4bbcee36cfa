package worker_test

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/worker"
)

// A trace context as a publisher writes it: trace, parent span, sampled.
const (
	pubTraceID    = "4bf92f3577b34da6a3ce929d0e0e4736"
	pubSpanID     = "00f067aa0ba902b7"
	pubParent     = "00-" + pubTraceID + "-" + pubSpanID + "-01"
	pubUnsampled  = "00-" + pubTraceID + "-" + pubSpanID + "-00"
	pubTraceState = "vendor=opaque"
)

// tracer returns a tracer provider that records every span in memory,
// synchronously: a span is in the exporter once it has ended.
func tracer(t *testing.T) (*sdktrace.TracerProvider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp, exp
}

// handled records what a handler saw of its trace.
type handled struct {
	mu sync.Mutex
	sc trace.SpanContext
}

func (h *handled) spanContext() trace.SpanContext {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sc
}

// handlerThat records its context's span, annotates the message and
// returns err.
func (h *handled) handlerThat(err error) worker.Handler {
	return worker.HandlerFunc(func(ctx context.Context, m *worker.Message) error {
		h.mu.Lock()
		h.sc = trace.SpanContextFromContext(ctx)
		h.mu.Unlock()
		m.Annotate("order_id", "ord-7", "event_id", "ev-7")
		return err
	})
}

// oneSpan waits for the delivery's span and returns it.
func oneSpan(r *rig, exp *tracetest.InMemoryExporter) tracetest.SpanStub {
	r.t.Helper()
	r.eventually("the delivery's span ended", func() bool { return len(exp.GetSpans()) > 0 })
	spans := exp.GetSpans()
	if len(spans) != 1 {
		r.t.Fatalf("%d spans, want one per delivery: %v", len(spans), spans)
	}
	return spans[0]
}

func attrOf(s tracetest.SpanStub, key string) (string, bool) {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String(), true
		}
	}
	return "", false
}

// TestDeliverySpanContinuesThePublishersTrace: the message's traceparent
// (and tracestate) is the parent of its consumer span; the handler's
// context carries that span; the span says which message, which queue and
// what the handler annotated, and ends once the message is settled.
func TestDeliverySpanContinuesThePublishersTrace(t *testing.T) {
	t.Parallel()
	tp, exp := tracer(t)
	var h handled
	r := start(t, newFake(), h.handlerThat(nil), worker.Config{TracerProvider: tp})
	id := r.put("body", map[string]sqstypes.MessageAttributeValue{
		worker.AttrTraceParent: str(pubParent), worker.AttrTraceState: str(pubTraceState), "event_type": str("order.placed"),
	})
	s := oneSpan(r, exp)
	r.eventually("the message deleted", func() bool { return r.deleted(id) })

	if got := s.SpanContext.TraceID().String(); got != pubTraceID {
		t.Errorf("span's trace %s, want the publisher's %s", got, pubTraceID)
	}
	if got := s.Parent.SpanID().String(); got != pubSpanID || !s.Parent.IsRemote() {
		t.Errorf("span's parent %s (remote %v), want the publisher's span %s", got, s.Parent.IsRemote(), pubSpanID)
	}
	if got := s.SpanContext.TraceState().String(); got != pubTraceState {
		t.Errorf("span's tracestate %q, want %q", got, pubTraceState)
	}
	if s.SpanKind != trace.SpanKindConsumer || s.Name != "process orders" {
		t.Errorf("span %q of kind %v, want \"process orders\", consumer", s.Name, s.SpanKind)
	}
	if got := h.spanContext(); got.SpanID() != s.SpanContext.SpanID() {
		t.Errorf("the handler's context carries span %s, want the delivery's %s", got.SpanID(), s.SpanContext.SpanID())
	}
	for key, want := range map[string]string{
		"messaging.message.id": id, "messaging.destination.name": "orders", "messaging.system": "aws_sqs",
		"handler": "test", "receive_count": "1", "order_id": "ord-7", "event_id": "ev-7", "outcome": "ok",
	} {
		if got, ok := attrOf(s, key); got != want {
			t.Errorf("attribute %s = %q (set %v), want %q", key, got, ok, want)
		}
	}
	if s.Status.Code == codes.Error {
		t.Errorf("status %v for a handled message", s.Status)
	}
}

// TestNoTracerProviderTracesNothing: without a provider the runtime reads
// no trace context: the handler's context has no span, and the log lines
// no trace ids.
func TestNoTracerProviderTracesNothing(t *testing.T) {
	t.Parallel()
	var h handled
	r := start(t, newFake(), h.handlerThat(errors.New("boom")), worker.Config{})
	r.put("body", map[string]sqstypes.MessageAttributeValue{worker.AttrTraceParent: str(pubParent)})
	r.eventually("the failure logged", func() bool { return len(r.logs.find("handler failed")) > 0 })
	if sc := h.spanContext(); sc.IsValid() {
		t.Errorf("the handler's context carries span context %v with tracing off", sc)
	}
	rec := r.logs.find("handler failed")[0]
	if _, ok := rec.Attrs[worker.LogTraceID]; ok {
		t.Errorf("log line %v carries a trace id with tracing off", rec.Attrs)
	}
}

// TestLogLinesAboutAMessageCarryItsTrace: a retried message's warning
// names its trace and its delivery's span, beside its order; the span says
// it failed without the error's text.
func TestLogLinesAboutAMessageCarryItsTrace(t *testing.T) {
	t.Parallel()
	tp, exp := tracer(t)
	r := start(t, newFake(), (&handled{}).handlerThat(errors.New("database down for ada@example.com")), worker.Config{TracerProvider: tp})
	r.put("body", map[string]sqstypes.MessageAttributeValue{worker.AttrTraceParent: str(pubParent)})
	s := oneSpan(r, exp)
	r.eventually("the failure logged", func() bool { return len(r.logs.find("handler failed")) > 0 })
	rec := r.logs.find("handler failed")[0]
	for key, want := range map[string]string{
		worker.LogTraceID: pubTraceID, worker.LogSpanID: s.SpanContext.SpanID().String(), "order_id": "ord-7",
	} {
		if got := rec.Attrs[key]; got != want {
			t.Errorf("log line %q: %s = %q, want %q", rec.Msg, key, got, want)
		}
	}
	if s.Status.Code != codes.Error || s.Status.Description != "retry" {
		t.Errorf("span status %+v, want an error saying retry", s.Status)
	}
	for _, a := range s.Attributes {
		if a.Value.Type() == attribute.STRING && strings.Contains(a.Value.AsString(), "ada@") {
			t.Errorf("span attribute %s carries the error's text: %q", a.Key, a.Value.AsString())
		}
	}
}

// TestUnsampledTraceStaysUnsampled: a publisher that did not sample its
// trace decides for the worker too (parent-based sampling): nothing
// recorded, no trace ids on the log lines.
func TestUnsampledTraceStaysUnsampled(t *testing.T) {
	t.Parallel()
	tp, exp := tracer(t)
	var h handled
	r := start(t, newFake(), h.handlerThat(errors.New("boom")), worker.Config{TracerProvider: tp})
	r.put("body", map[string]sqstypes.MessageAttributeValue{worker.AttrTraceParent: str(pubUnsampled)})
	r.eventually("the failure logged", func() bool { return len(r.logs.find("handler failed")) > 0 })
	if n := len(exp.GetSpans()); n != 0 {
		t.Errorf("%d spans recorded for an unsampled trace", n)
	}
	if sc := h.spanContext(); sc.TraceID().String() != pubTraceID || sc.IsSampled() {
		t.Errorf("the handler's span context %v, want the publisher's trace, unsampled", sc)
	}
	if rec := r.logs.find("handler failed")[0]; rec.Attrs[worker.LogTraceID] != "" {
		t.Errorf("log line carries trace id %q of a trace nobody records", rec.Attrs[worker.LogTraceID])
	}
}

// TestDeadLetterCarriesTheTraceWithinTen: a message with ten attributes,
// its trace context among them, dead-lettered with tracing on. The copy
// carries the trace context of the delivery's span in place of the one
// received (same trace, the delivery's span as parent), counted among the
// runtime's attributes: ten in all (the fake refuses more, as SQS does),
// what the product keeps first kept, the rest folded and recoverable.
func TestDeadLetterCarriesTheTraceWithinTen(t *testing.T) {
	t.Parallel()
	tp, exp := tracer(t)
	attrs := attrsN(6, map[string]sqstypes.MessageAttributeValue{
		worker.AttrTraceParent: str(pubParent), worker.AttrTraceState: str(pubTraceState),
		"event_type": str("order.placed"), "schema_version": str("1"),
	})
	cfg := worker.Config{TracerProvider: tp, DeadLetterKeepAttributes: []string{"event_type", "schema_version", worker.AttrTraceParent, worker.AttrTraceState}}
	r, id, _ := deadLetterOne(t, newFake(), cfg, "body", attrs, "bad_input", errors.New("never valid"))
	if !r.deleted(id) {
		t.Fatal("the message was not dead-lettered")
	}
	s := oneSpan(r, exp)
	dlq := r.dlq()
	if len(dlq) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(dlq))
	}
	got := dlq[0].Attributes
	if len(got) != 10 {
		t.Errorf("the copy has %d attributes, want SQS's ten: %v", len(got), slices.Sorted(maps.Keys(got)))
	}
	wantParent := "00-" + pubTraceID + "-" + s.SpanContext.SpanID().String() + "-01"
	if tp := aws.ToString(got[worker.AttrTraceParent].StringValue); tp != wantParent {
		t.Errorf("the copy's traceparent %q, want the delivery span's %q", tp, wantParent)
	}
	if ts := aws.ToString(got[worker.AttrTraceState].StringValue); ts != pubTraceState {
		t.Errorf("the copy's tracestate %q, want %q", ts, pubTraceState)
	}
	for _, name := range []string{"event_type", "schema_version", worker.AttrDLQReason, worker.AttrDLQError, worker.AttrDLQSourceQueue, worker.AttrDLQReceiveCount, worker.AttrDLQDroppedAttributes} {
		if _, ok := got[name]; !ok {
			t.Errorf("the copy has no %s: %v", name, slices.Sorted(maps.Keys(got)))
		}
	}
	dropped, err := worker.DroppedAttributes(aws.ToString(got[worker.AttrDLQDroppedAttributes].StringValue))
	if err != nil {
		t.Fatal(err)
	}
	for name := range attrs {
		_, kept := got[name]
		_, folded := dropped[name]
		if !kept && !folded {
			t.Errorf("attribute %s is neither kept nor folded", name)
		}
	}
	if reason, _ := attrOf(s, "outcome_reason"); reason != "bad_input" || s.Status.Code != codes.Error {
		t.Errorf("span status %+v, outcome_reason %q; want an error with the DLQ reason", s.Status, reason)
	}
}

// TestDeadLetterWithoutTracingKeepsTheTraceAsReceived: tracing off, the
// trace context is an incoming attribute like any other, kept first as the
// product asks.
func TestDeadLetterWithoutTracingKeepsTheTraceAsReceived(t *testing.T) {
	t.Parallel()
	attrs := attrsN(8, map[string]sqstypes.MessageAttributeValue{worker.AttrTraceParent: str(pubParent)})
	cfg := worker.Config{DeadLetterKeepAttributes: []string{worker.AttrTraceParent}}
	r, _, _ := deadLetterOne(t, newFake(), cfg, "body", attrs, "bad_input", errors.New("never valid"))
	dlq := r.dlq()
	if len(dlq) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(dlq))
	}
	if got := aws.ToString(dlq[0].Attributes[worker.AttrTraceParent].StringValue); got != pubParent {
		t.Errorf("the copy's traceparent %q, want the one received %q", got, pubParent)
	}
	if n := len(dlq[0].Attributes); n != 10 {
		t.Errorf("the copy has %d attributes, want ten", n)
	}
}
