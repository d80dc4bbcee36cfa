package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store/admin"
)

// TestXRayTraceID: the X-Ray console's form of a W3C trace id, and nothing
// for what is not one.
func TestXRayTraceID(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"4bf92f3577b34da6a3ce929d0e0e4736", "1-4bf92f35-77b34da6a3ce929d0e0e4736"},
		{"4bf92f35", ""},
		{"4bf92f3577b34da6a3ce929d0e0e473g", ""},
		{"", ""},
	} {
		if got := admin.XRayTraceID(tt.in); got != tt.want {
			t.Errorf("XRayTraceID(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestTracePrintsWhereTheOrdersTraceIs: `orderctl trace ORDER_ID` reads
// the order's ledger rows and outbox rows (as the worker writes them) and
// prints each event with its trace, the order's traces once each with the
// X-Ray console address, and the Logs Insights query of the order's log
// lines, its id quoted for Insights and for the shell. An order handled
// without tracing says so; an unknown order is an error that still gives
// the log query.
func TestTracePrintsWhereTheOrdersTraceIs(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "orderctl")
	ctx := context.Background()
	const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	order := "ord-" + uuid.NewString()[:8] + `-"q'`
	untraced := "ord-" + uuid.NewString()[:8]
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := env.DB.Pool().Exec(ctx, q, args...); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for _, row := range []struct {
		handler, eventType, order string
		trace                     any
	}{
		{"inventory", "order.placed", order, traceID}, {"billing", "order.placed", order, traceID},
		{"notification", "order.placed", order, traceID}, {"billing", "order.cancelled", order, traceID},
		{"billing", "order.placed", untraced, nil},
	} {
		exec(`INSERT INTO processed_events (handler, event_id, event_type, order_id, trace_id) VALUES ($1, $2::uuid, $3, $4, $5)`,
			row.handler, uuid.NewString(), row.eventType, row.order, row.trace)
	}
	exec(`INSERT INTO outbox (event_id, event_type, body, topic, order_id, traceparent, sent_at) VALUES ($1::uuid, 'order.cancelled', '{}', 'orders', $2, $3, now())`,
		uuid.NewString(), order, "00-"+traceID+"-00f067aa0ba902b7-01")

	run := func(id string) (string, error) {
		var out bytes.Buffer
		err := runTrace(ctx, env.DB, &out, traceOptions{orderID: id, logGroup: "/ecs/orderpipe", region: "eu-west-1"})
		return out.String(), err
	}
	out, err := run(order)
	if err != nil {
		t.Fatalf("orderctl trace: %v\n%s", err, out)
	}
	t.Logf("orderctl trace %s:\n%s", order, out)
	for _, want := range []string{
		"4 events handled, 1 event in the outbox, 1 trace",
		"trace " + traceID + " (X-Ray: 1-4bf92f35-77b34da6a3ce929d0e0e4736)",
		"https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1#xray:traces/1-4bf92f35-77b34da6a3ce929d0e0e4736",
		"log group /ecs/orderpipe",
		`annotation.order_id = "` + strings.ReplaceAll(order, `"`, `\"`) + `"`,
		`| filter order_id = "` + strings.ReplaceAll(order, `"`, `\"`) + `"`,
		`--log-group-name '/ecs/orderpipe'`,
		`'\''`, // the order id's single quote, quoted for the shell
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if !regexp.MustCompile(`\boutbox\s+order\.cancelled\s+\S+\s+` + traceID + `\s+sent `).MatchString(out) {
		t.Error("output lacks the outbox row, with its trace and when it was sent")
	}
	if n := strings.Count(out, "trace "+traceID); n != 1 {
		t.Errorf("trace %s listed %d times, want once", traceID, n)
	}
	if n := strings.Count(out, " "+traceID+"  "); n != 5 {
		t.Errorf("%d event rows name the trace, want 5 (four ledger rows, one outbox row)", n)
	}

	out, err = run(untraced)
	if err != nil || !strings.Contains(out, "No trace was recorded for this order") || strings.Contains(out, "X-Ray:") {
		t.Errorf("an untraced order: err %v, output:\n%s", err, out)
	}
	out, err = run("ord-nobody-" + uuid.NewString())
	if err == nil || !strings.Contains(out, "| filter order_id = ") {
		t.Errorf("an unknown order: err %v (want one), output:\n%s", err, out)
	}
}
