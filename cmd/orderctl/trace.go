package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/admin"
)

// traceOptions are `orderctl trace`'s arguments.
type traceOptions struct {
	orderID  string
	logGroup string
	region   string
}

func traceCmd(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("trace")
	logGroup := fs.String("log-group", "/ecs/"+c.Common.Prefix+"orderpipe", "the worker's CloudWatch log group (the stack's LogGroupName output)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: orderctl trace [--log-group NAME] ORDER_ID")
	}
	db, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	return runTrace(ctx, db, c.Out, traceOptions{orderID: fs.Arg(0), logGroup: *logGroup, region: c.Common.Region})
}

// runTrace prints where the order's trace and log lines are: the traces
// its handlers recorded (processed_events.trace_id, the outbox's
// traceparent), with each handled event, the X-Ray console's address for
// each, and the CloudWatch Logs Insights query of its log lines.
func runTrace(ctx context.Context, db *store.DB, out io.Writer, o traceOptions) error {
	ot, err := admin.ReadOrderTrace(ctx, db, o.orderID)
	if err != nil {
		return err
	}
	if len(ot.Events) == 0 && len(ot.Outbox) == 0 {
		printLogQuery(out, o, time.Time{}, time.Time{})
		return fmt.Errorf("no handler has recorded an event of order %q (yet): its log lines, if any, are found with the query above", o.orderID)
	}
	ids := ot.TraceIDs()
	fmt.Fprintf(out, "order %s: %s handled, %s in the outbox, %s\n\n", o.orderID,
		plural(len(ot.Events), "event"), plural(len(ot.Outbox), "event"), plural(len(ids), "trace"))
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "at (UTC)\thandler\ttype\tevent id\ttrace id\t")
	var first, last time.Time
	if len(ot.Events) > 0 {
		first, last = ot.Events[0].ProcessedAt, ot.Events[len(ot.Events)-1].ProcessedAt
	}
	for _, e := range ot.Events {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t\n", e.ProcessedAt.UTC().Format(time.RFC3339Nano), e.Handler, e.EventType, e.EventID, orDash(e.TraceID))
	}
	for _, ob := range ot.Outbox {
		sent := "unsent"
		if ob.SentAt != nil {
			sent = "sent " + ob.SentAt.UTC().Format(time.RFC3339Nano)
		}
		fmt.Fprintf(w, "%s\toutbox\t%s\t%s\t%s\t%s\n", ob.CreatedAt.UTC().Format(time.RFC3339Nano), ob.EventType, ob.EventID, orDash(ob.TraceID), sent)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	fmt.Fprintln(out)
	if len(ids) == 0 {
		fmt.Fprintln(out, "No trace was recorded for this order: tracing was off (OTEL_* unset) when it was handled, or its trace was not sampled.")
	}
	for _, id := range ids {
		x := admin.XRayTraceID(id)
		fmt.Fprintf(out, "trace %s (X-Ray: %s)\n", id, x)
		fmt.Fprintf(out, "  https://%s.console.aws.amazon.com/cloudwatch/home?region=%s#xray:traces/%s\n", o.region, o.region, x)
	}
	if len(ids) > 0 {
		fmt.Fprintf(out, "  (X-Ray takes either form of the id. With the collector indexing order_id (README, Traces), the X-Ray filter expression\n   annotation.order_id = %s finds the order's traces too.)\n\n", insightsString(o.orderID))
	}
	printLogQuery(out, o, first, last)
	return nil
}

// printLogQuery prints the Logs Insights query of the order's log lines,
// and the aws CLI line that runs it over [first-1h, last+1h] (the last day
// when unknown).
func printLogQuery(out io.Writer, o traceOptions, first, last time.Time) {
	q := fmt.Sprintf("fields @timestamp, level, msg, handler, event_type, message_id, receive_count, trace_id, err\n"+
		"| filter order_id = %s\n| sort @timestamp asc", insightsString(o.orderID))
	if first.IsZero() {
		last = time.Now()
		first = last.Add(-24 * time.Hour)
	}
	fmt.Fprintf(out, "Its log lines (CloudWatch Logs Insights, log group %s; a handled order logs only warnings, retries and dead letters):\n", o.logGroup)
	for l := range strings.SplitSeq(q, "\n") {
		fmt.Fprintln(out, "  "+l)
	}
	fmt.Fprintf(out, "\n  aws logs start-query --region %s --log-group-name %s --start-time %d --end-time %d --query-string %s\n",
		shellQuote(o.region), shellQuote(o.logGroup), first.Add(-time.Hour).Unix(), last.Add(time.Hour).Unix(), shellQuote(strings.ReplaceAll(q, "\n", " ")))
	fmt.Fprintln(out, "  aws logs get-query-results --query-id <the queryId it prints>")
}

// insightsString quotes s as a Logs Insights string literal.
func insightsString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
