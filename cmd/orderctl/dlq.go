package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/topology"
)

const dlqUsage = "usage: orderctl dlq list [--queue H] [--limit N] | show MESSAGE_ID [--queue H] | redrive (--id ID | --reason R | --all) [--queue H] [--timeout D]"

// dlqCmd: list, show and redrive dead-lettered messages.
func dlqCmd(ctx context.Context, c *cli, args []string) error {
	o, err := parseDLQ(args)
	if err != nil {
		return err
	}
	cfg, err := c.Common.AWS(ctx)
	if err != nil {
		return err
	}
	ap, err := c.Resolve(ctx, cfg)
	if err != nil {
		return err
	}
	o.retention, o.window = c.Common.Retention, c.Common.Topology().RedriveWindow(c.Common.Retention)
	return runDLQ(ctx, sqs.NewFromConfig(cfg), ap, c.Out, o)
}

// dlqOptions is one `orderctl dlq` command line.
type dlqOptions struct {
	sub     string // list, show, redrive
	showID  string
	queue   string
	id      string
	reason  string
	all     bool
	limit   int
	timeout time.Duration
	// retention is LEDGER_RETENTION, and window how old an event may be
	// for its redrive to be safe under it (topology.RedriveWindow); 0: no
	// check.
	retention, window time.Duration
}

func parseDLQ(args []string) (dlqOptions, error) {
	if len(args) == 0 {
		return dlqOptions{}, errors.New(dlqUsage)
	}
	o := dlqOptions{sub: args[0]}
	args = args[1:]
	fs := newFlags("dlq " + o.sub)
	fs.StringVar(&o.queue, "queue", "", "only this handler's DLQ (billing, inventory, notification)")
	switch o.sub {
	case "list":
		fs.IntVar(&o.limit, "limit", 100, "list at most this many per queue")
	case "show":
		if len(args) == 0 || args[0] == "" || args[0][0] == '-' {
			return o, errors.New("usage: orderctl dlq show MESSAGE_ID [--queue H]")
		}
		o.showID, args = args[0], args[1:]
	case "redrive":
		fs.StringVar(&o.id, "id", "", "redrive only this message")
		fs.StringVar(&o.reason, "reason", "", "redrive only messages dead-lettered for this reason")
		fs.BoolVar(&o.all, "all", false, "redrive every message (required when neither --id nor --reason is given)")
		fs.DurationVar(&o.timeout, "timeout", dlq.RedriveTimeoutDefault, "stop the redrive after this long")
	default:
		return o, fmt.Errorf("unknown dlq command %q (list, show, redrive)", o.sub)
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q; %s", fs.Args(), dlqUsage)
	}
	if o.sub == "redrive" && o.id == "" && o.reason == "" && !o.all {
		return o, errors.New("say which: --id ID, --reason R, or --all")
	}
	return o, nil
}

// runDLQ runs a parsed `orderctl dlq` command against the queues of ap.
// Whatever came from a message is printed through dlq.Printable or
// dlq.PrintableJSON.
func runDLQ(ctx context.Context, client dlq.SQSAPI, ap topology.Applied, out io.Writer, o dlqOptions) error {
	queues, err := pick(ap, o.queue)
	if err != nil {
		return err
	}
	switch o.sub {
	case "list":
		return listDLQ(ctx, client, queues, out, o.limit)
	case "show":
		return showDLQ(ctx, client, queues, out, o.showID)
	case "redrive":
		return redriveDLQ(ctx, client, queues, out, o)
	}
	return fmt.Errorf("unknown dlq command %q (list, show, redrive)", o.sub)
}

func listDLQ(ctx context.Context, client dlq.SQSAPI, queues []topology.AppliedQueue, out io.Writer, limit int) error {
	w := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(w, "HANDLER\tMESSAGE ID\tREASON\tRECEIVES\tDEAD-LETTERED\tERROR")
	total := 0
	var errs []error
	for _, q := range queues {
		letters, err := dlq.List(ctx, client, q.DLQURL, limit)
		if err != nil {
			errs = append(errs, fmt.Errorf("list %s DLQ: %w", q.Handler, err))
		}
		for _, l := range letters {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", q.Handler, dlq.Printable(l.ID), dlq.Printable(l.Reason),
				dash(dlq.Printable(l.ReceiveCount)), l.SentAt.Format("2006-01-02 15:04:05"), clip(dlq.Printable(l.Error), 80))
		}
		total += len(letters)
	}
	fmt.Fprintf(w, "%d dead-lettered\n", total)
	return errors.Join(append(errs, w.Flush())...)
}

func showDLQ(ctx context.Context, client dlq.SQSAPI, queues []topology.AppliedQueue, out io.Writer, id string) error {
	for _, q := range queues {
		l, ok, err := dlq.Find(ctx, client, q.DLQURL, id)
		if !ok {
			if err != nil {
				return fmt.Errorf("look for %s in the %s DLQ: %w", id, q.Handler, err)
			}
			continue
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{
			"handler": q.Handler, "message_id": l.ID, "reason": l.Reason, "error": l.Error,
			"receive_count": l.ReceiveCount, "source_queue": l.SourceQueue, "dead_lettered_at": l.SentAt,
			"attributes": l.Attributes, "body": bodyValue(l.Body),
		}); err != nil {
			return fmt.Errorf("show %s: %w", id, err)
		}
		if _, werr := out.Write(dlq.PrintableJSON(buf.Bytes())); werr != nil {
			return fmt.Errorf("show %s: %w", id, werr)
		}
		return err // the letter was found; a failure to hand messages back is still worth saying
	}
	return fmt.Errorf("no dead-lettered message %s", id)
}

// redriveDLQ prints each message it sends back as it goes, then a summary
// per queue and a total. --timeout bounds the whole command, all queues
// together; it stops at the first queue that fails or stops at a bound.
func redriveDLQ(ctx context.Context, client dlq.SQSAPI, queues []topology.AppliedQueue, out io.Writer, o dlqOptions) error {
	deadline := time.Now().Add(o.timeout)
	total := 0
	var refused []string
	defer func() { fmt.Fprintf(out, "%d messages back in their queues\n", total) }()
	var notBefore time.Time
	if o.window > 0 {
		notBefore = time.Now().Add(-o.window).UTC()
	}
	for _, q := range queues {
		cfg := dlq.RedriveConfig{
			DLQURL: q.DLQURL, SourceURL: q.URL, Timeout: time.Until(deadline), NotBefore: notBefore,
			MatchFunc: func(l dlq.Letter) bool {
				return (o.id == "" || l.ID == o.id) && (o.reason == "" || l.Reason == o.reason)
			},
			RefusedFunc: func(r dlq.Refusal) {
				line := refusalLine(q.Handler, r, o, notBefore)
				refused = append(refused, line)
				fmt.Fprintln(out, line)
			},
			RedrivenFunc: func(l dlq.Letter, newID string) {
				fmt.Fprintf(out, "%-12s  %s  %-26s  sent back as %s\n", q.Handler, dlq.Printable(l.ID), dlq.Printable(l.Reason), dlq.Printable(newID))
			},
		}
		if o.id != "" {
			cfg.Max = 1
		}
		if cfg.Timeout <= 0 {
			return fmt.Errorf("redrive: --timeout %s reached before the %s DLQ: %w", o.timeout, q.Handler, dlq.ErrDeadline)
		}
		res, err := dlq.RedriveWith(ctx, client, cfg)
		total += res.Redriven
		fmt.Fprintln(out, redriveSummary(q.Handler, res))
		switch {
		case err != nil:
			return fmt.Errorf("redrive %s DLQ: %w", q.Handler, err)
		case res.Stopped == dlq.StoppedBound:
			return fmt.Errorf("redrive %s DLQ: stopped after %d, the most one run sends back (its depth at the start, %d, plus a margin); are the clocks of this host and SQS apart?", q.Handler, res.Redriven, res.AtStart)
		case o.id != "" && res.Redriven+res.Refused == 1:
			return refusedErr(refused)
		}
	}
	if err := refusedErr(refused); err != nil {
		return err
	}
	if o.id != "" {
		return fmt.Errorf("no dead-lettered message %s", o.id)
	}
	return nil
}

// refusalLine names a dead letter the redrive refused, with its event's
// date and why.
func refusalLine(handler string, r dlq.Refusal, o dlqOptions, notBefore time.Time) string {
	event := ""
	if r.EventID != "" {
		event = " (event " + dlq.Printable(r.EventID) + ")"
	}
	return fmt.Sprintf("%-12s  %s%s  REFUSED: its event dates from %s; with LEDGER_RETENTION %s only events since %s may be redriven "+
		"(the retention less the %s a redriven copy can wait in its queue, a day's margin included): its ledger rows may be gone "+
		"by the time a worker takes the copy, which would be applied again. It stays in the DLQ",
		handler, dlq.Printable(r.ID), event, r.At.Format(time.RFC3339), topology.FormatDays(o.retention),
		notBefore.Format(time.RFC3339), topology.FormatDays(o.retention-o.window))
}

func refusedErr(refused []string) error {
	if len(refused) == 0 {
		return nil
	}
	return fmt.Errorf("refused %d dead letters older than the ledger's retention allows for a redrive (see above): handle them by hand, knowing they may have been applied already", len(refused))
}

func redriveSummary(handler string, res dlq.RedriveResult) string {
	s := fmt.Sprintf("%s: %d redriven", handler, res.Redriven)
	if res.Refused > 0 {
		s += fmt.Sprintf("; %d refused (older than LEDGER_RETENTION allows) left in the DLQ", res.Refused)
	}
	if res.Newer > 0 {
		s += fmt.Sprintf("; %d dead-lettered after the redrive began left in the DLQ", res.Newer)
	}
	return s
}

func pick(ap topology.Applied, handler string) ([]topology.AppliedQueue, error) {
	var out []topology.AppliedQueue
	for _, h := range []string{"billing", "inventory", "notification"} {
		if q, ok := ap.Queues[h]; ok && (handler == "" || handler == h) {
			out = append(out, q)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no queue for handler %q", handler)
	}
	return out, nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// clip shortens s to n runes, so a cut never splits a character.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	i := 0
	for range n {
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
	}
	return s[:i] + "…"
}

// bodyValue is a message body as it is shown: JSON as it is, anything
// else as a JSON string.
func bodyValue(s string) any {
	if json.Valid([]byte(s)) {
		return json.RawMessage(s)
	}
	return s
}
