package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/go-cmp/cmp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/worker"
)

// spanTree is the spans of one trace, by parent.
type spanTree struct {
	spans    []tracetest.SpanStub
	children map[trace.SpanID][]tracetest.SpanStub
}

func treeOf(all []tracetest.SpanStub, id trace.TraceID) spanTree {
	t := spanTree{children: map[trace.SpanID][]tracetest.SpanStub{}}
	for _, s := range all {
		if s.SpanContext.TraceID() == id {
			t.spans = append(t.spans, s)
			t.children[s.Parent.SpanID()] = append(t.children[s.Parent.SpanID()], s)
		}
	}
	for _, c := range t.children {
		slices.SortFunc(c, func(a, b tracetest.SpanStub) int { return a.StartTime.Compare(b.StartTime) })
	}
	return t
}

func spanAttr(s tracetest.SpanStub, key string) string {
	for _, a := range s.Attributes {
		if string(a.Key) == key {
			return a.Value.String()
		}
	}
	return ""
}

// child returns the child of parent whose name is name (and whose
// attributes match kv, pairs of key and value), or an error saying what
// is there instead.
func (t spanTree) child(parent tracetest.SpanStub, name string, kv ...string) (tracetest.SpanStub, error) {
	var names []string
	for _, c := range t.children[parent.SpanContext.SpanID()] {
		match := c.Name == name
		for i := 0; match && i+1 < len(kv); i += 2 {
			match = spanAttr(c, kv[i]) == kv[i+1]
		}
		if match {
			return c, nil
		}
		names = append(names, c.Name)
	}
	return tracetest.SpanStub{}, fmt.Errorf("%q has no child %q %v; its children: %v", parent.Name, name, kv, names)
}

// descendant reports whether s has a descendant whose name starts with prefix.
func (t spanTree) descendant(s tracetest.SpanStub, prefix string) bool {
	for _, c := range t.children[s.SpanContext.SpanID()] {
		if strings.HasPrefix(c.Name, prefix) || t.descendant(c, prefix) {
			return true
		}
	}
	return false
}

// render renders the tree under s, one span a line, with what identifies it.
func (t spanTree) render(b *strings.Builder, s tracetest.SpanStub, depth int) {
	fmt.Fprintf(b, "%s%s", strings.Repeat("  ", depth), s.Name)
	for _, k := range []string{"event_type", "outcome", "idempotency", "smtp.outcome", "db.operation.batch.size"} {
		if v := spanAttr(s, k); v != "" {
			fmt.Fprintf(b, " %s=%s", k, v)
		}
	}
	fmt.Fprintf(b, " (%s)\n", s.EndTime.Sub(s.StartTime).Round(10*time.Microsecond))
	for _, c := range t.children[s.SpanContext.SpanID()] {
		t.render(b, c, depth+1)
	}
}

// handled checks that a message published as pub was received by each
// handler's queue as a child of pub ("process <queue>"), handled under a
// span of its own ("<handler> <event type>") that did its database work
// (and, for notification, sent its email) within it, and returns the
// handlers' spans.
func (t spanTree) handled(s *stack, pub tracetest.SpanStub, eventType events.Type, handlers ...string) (map[string]tracetest.SpanStub, error) {
	out := map[string]tracetest.SpanStub{}
	for _, h := range handlers {
		q := s.ap.Queues[h]
		proc, err := t.child(pub, "process "+q.URL[strings.LastIndex(q.URL, "/")+1:], "outcome", "ok", "event_type", string(eventType))
		if err != nil {
			return nil, err
		}
		if proc.SpanKind != trace.SpanKindConsumer {
			return nil, fmt.Errorf("%s is a %v span, want consumer", proc.Name, proc.SpanKind)
		}
		hs, err := t.child(proc, h+" "+string(eventType))
		if err != nil {
			return nil, err
		}
		wants := []string{"postgresql ", "redis "}
		if h == "notification" {
			wants = append(wants, "smtp send")
		}
		if h != "notification" {
			wants = append(wants, "postgresql orderpipe_") // the effect: one call of its function
		}
		for _, w := range wants {
			if !t.descendant(hs, w) {
				return nil, fmt.Errorf("%s has no %q span below it", hs.Name, w)
			}
		}
		out[h] = hs
	}
	return out, nil
}

// TestOneOrdersTraceEndToEnd follows two orders through the real local
// stack (the SNS/SQS emulator with the topology's raw delivery, PgBouncer,
// Redis, Mailpit) with tracing on, the spans recorded in memory: each
// order's publish is the root of one trace, below which each of the three
// queues' delivery, each handler and its database (one pipelined batch for
// billing's and inventory's effects), Redis and SMTP work hang. The
// out-of-stock order's compensation, relayed from the outbox, is in the
// same trace, below inventory's decision, and so are billing's,
// inventory's and notification's handling of it. The ledger's trace_id,
// the outbox row's traceparent and `orderctl trace`'s source name that
// trace; a dead-lettered message's log lines carry its trace; no span
// carries the customer's email address.
func TestOneOrdersTraceEndToEnd(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 100},
		catalog.Product{SKU: "GONE", Name: "Sold out", Price: 900, Stock: 0})
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	var logs lockedBuffer
	s.startWorker(t, func(c *app.Config) {
		c.TracerProvider = tp
		c.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	})
	pub, err := events.NewPublisher(sns.NewFromConfig(s.env.AWS), events.PublisherConfig{TopicARN: s.ap.TopicARN, TracerProvider: tp})
	if err != nil {
		t.Fatal(err)
	}
	ok, gone := s.placed("trace-ok", "", "MUG", 2), s.placed("trace-gone", "", "GONE", 1)
	if n, err := pub.Publish(context.Background(), []events.Event{ok, gone}); n != 2 || err != nil {
		t.Fatalf("published %d of 2: %v", n, err)
	}
	poison := events.RawMessage{Body: `{"not":"an event"}`, EventType: string(events.OrderPlaced), SchemaVersion: 1, OrderID: s.prefix + "poison"}
	if _, err := pub.PublishRaw(context.Background(), []events.RawMessage{poison}); err != nil {
		t.Fatal(err)
	}
	// ok: placed by each handler; gone: placed and its compensation.
	s.waitProcessed(t, map[string]int64{"billing": 3, "inventory": 3, "notification": 3}, 3)

	roots := map[string]tracetest.SpanStub{}
	var trees map[string]spanTree
	testenv.Eventually(t, 30*time.Second, func() error {
		all := exp.GetSpans()
		trees = map[string]spanTree{}
		for _, sp := range all {
			if id := spanAttr(sp, "order_id"); sp.Name == "publish "+s.top.Topic && spanAttr(sp, "event_type") == string(events.OrderPlaced) {
				roots[id] = sp
				trees[id] = treeOf(all, sp.SpanContext.TraceID())
			}
		}
		// Every span about an order is in the order's one trace, below its publish.
		for _, sp := range all {
			root, found := roots[spanAttr(sp, "order_id")]
			if found && sp.SpanContext.TraceID() != root.SpanContext.TraceID() {
				return fmt.Errorf("span %q (%s) of order %s is in trace %s, not the order's %s",
					sp.Name, spanAttr(sp, "event_type"), spanAttr(sp, "order_id"), sp.SpanContext.TraceID(), root.SpanContext.TraceID())
			}
		}
		for _, id := range []string{ok.Order.OrderID, gone.Order.OrderID, poison.OrderID} {
			if _, found := roots[id]; !found {
				return fmt.Errorf("no root publish span for %s among %d spans", id, len(all))
			}
		}
		tr := trees[ok.Order.OrderID]
		if _, err := tr.handled(s, roots[ok.Order.OrderID], events.OrderPlaced, "billing", "inventory", "notification"); err != nil {
			return fmt.Errorf("order %s: %w", ok.Order.OrderID, err)
		}
		return compensationJoins(s, trees[gone.Order.OrderID], roots[gone.Order.OrderID])
	})

	for _, o := range []events.Event{ok, gone} {
		id := roots[o.Order.OrderID].SpanContext.TraceID().String()
		var b strings.Builder
		trees[o.Order.OrderID].render(&b, roots[o.Order.OrderID], 1)
		t.Logf("order %s, trace %s (%d spans):\n%s", o.Order.OrderID, id, len(trees[o.Order.OrderID].spans), b.String())

		// The ledger and `orderctl trace`'s source name the trace.
		ot, err := admin.ReadOrderTrace(context.Background(), s.env.DB, o.Order.OrderID)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{id}, ot.TraceIDs()); diff != "" {
			t.Errorf("order %s: the trace ids recorded (-want +got):\n%s", o.Order.OrderID, diff)
		}
		for _, e := range ot.Events {
			if e.TraceID != id {
				t.Errorf("order %s: %s's ledger row for %s has trace %q, want %s", o.Order.OrderID, e.Handler, e.EventType, e.TraceID, id)
			}
		}
	}
	if n := s.queryInt(t, `SELECT count(*) FROM outbox WHERE order_id = $1 AND split_part(traceparent, '-', 2) = $2`,
		gone.Order.OrderID, roots[gone.Order.OrderID].SpanContext.TraceID().String()); n != 1 {
		t.Errorf("%d outbox rows of %s carry its trace, want 1", n, gone.Order.OrderID)
	}

	// No span carries the customer's email address (or any address of the test's domain).
	for _, sp := range exp.GetSpans() {
		for _, a := range sp.Attributes {
			if strings.Contains(a.Value.String(), "@"+s.emailDomain()) {
				t.Errorf("span %q attribute %s carries an email address: %q", sp.Name, a.Key, a.Value.String())
			}
		}
	}
	checkDeadLetterTrace(t, s, &logs, roots[poison.OrderID].SpanContext.TraceID().String())
}

// compensationJoins checks the out-of-stock order's trace: inventory
// rejected it under the publish, the relay published the compensation
// below inventory's span, and billing, inventory and notification handled
// the cancellation below that publish.
func compensationJoins(s *stack, tr spanTree, root tracetest.SpanStub) error {
	placed, err := tr.handled(s, root, events.OrderPlaced, "billing", "inventory", "notification")
	if err != nil {
		return fmt.Errorf("order %s: %w", spanAttr(root, "order_id"), err)
	}
	inv := placed["inventory"]
	var relayed []tracetest.SpanStub
	for _, sp := range tr.spans {
		if sp.Name == root.Name && spanAttr(sp, "event_type") == string(events.OrderCancelled) {
			relayed = append(relayed, sp)
		}
	}
	if len(relayed) != 1 {
		return fmt.Errorf("%d publishes of the compensation in the order's trace, want 1", len(relayed))
	}
	comp := relayed[0]
	if !tr.descendant(inv, comp.Name) || comp.SpanKind != trace.SpanKindProducer {
		return fmt.Errorf("the compensation's publish (parent %s) is not below %s (%s)", comp.Parent.SpanID(), inv.Name, inv.SpanContext.SpanID())
	}
	if _, err := tr.handled(s, comp, events.OrderCancelled, "billing", "inventory", "notification"); err != nil {
		return fmt.Errorf("the compensation: %w", err)
	}
	return nil
}

// checkDeadLetterTrace: the poison message's dead-lettering is logged by
// each handler with the message's trace (trace_id, span_id beside the
// message's other ids), and its DLQ copy carries that trace on.
func checkDeadLetterTrace(t *testing.T, s *stack, logs *lockedBuffer, traceID string) {
	t.Helper()
	var lines []map[string]any
	testenv.Eventually(t, 30*time.Second, func() error {
		lines = nil
		for l := range strings.SplitSeq(strings.TrimSpace(string(logs.bytes())), "\n") {
			var rec map[string]any
			if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "message dead-lettered" {
				lines = append(lines, rec)
			}
		}
		if len(lines) < 3 {
			return fmt.Errorf("%d dead-lettering lines, want one per handler", len(lines))
		}
		return nil
	})
	for _, rec := range lines {
		if rec[worker.LogTraceID] != traceID || rec[worker.LogSpanID] == nil || rec["message_id"] == nil {
			t.Errorf("dead-lettering line %v: want trace_id %s, a span_id and the message id", rec, traceID)
		}
	}
	letters := drainLetters(t, sqs.NewFromConfig(s.env.AWS), s.ap.Queues["billing"].DLQURL, "", 1)
	for _, l := range letters {
		if got := strings.Split(l.attrs[worker.AttrTraceParent], "-"); len(got) != 4 || got[1] != traceID {
			t.Errorf("the dead letter's traceparent %q, want trace %s", l.attrs[worker.AttrTraceParent], traceID)
		}
	}
	if t.Failed() {
		t.Log(errors.New("worker log:\n" + lastLines(logs.bytes(), 20)))
	}
}
