package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/topology"
)

// dlqCmd: list, show and redrive dead-lettered messages.
func dlqCmd(ctx context.Context, c *cli, args []string) error {
	if len(args) == 0 {
		return errors.New("usage: orderctl dlq list [--queue H] | show MESSAGE_ID | redrive [--queue H] [--id ID] [--reason R] [--all]")
	}
	sub, args := args[0], args[1:]
	fs := newFlags("dlq " + sub)
	queue := fs.String("queue", "", "only this handler's DLQ (billing, inventory, notification)")
	id := fs.String("id", "", "redrive only this message")
	reason := fs.String("reason", "", "redrive only messages dead-lettered for this reason")
	all := fs.Bool("all", false, "redrive every message (required when neither --id nor --reason is given)")
	limit := fs.Int("limit", 100, "list at most this many per queue")
	var showID string
	if sub == "show" {
		if len(args) == 0 {
			return errors.New("usage: orderctl dlq show MESSAGE_ID")
		}
		showID, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.common.AWS(ctx)
	if err != nil {
		return err
	}
	ap, err := c.resolve(ctx, cfg)
	if err != nil {
		return err
	}
	sqsc := sqs.NewFromConfig(cfg)
	queues, err := pick(ap, *queue)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		w := tabwriter.NewWriter(c.out, 2, 4, 2, ' ', 0)
		fmt.Fprintln(w, "HANDLER\tMESSAGE ID\tREASON\tRECEIVES\tDEAD-LETTERED\tERROR")
		total := 0
		for _, q := range queues {
			letters, err := dlq.List(ctx, sqsc, q.DLQURL, *limit)
			if err != nil {
				return err
			}
			for _, l := range letters {
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", q.Handler, l.ID, l.Reason, dash(l.ReceiveCount), l.SentAt.Format("2006-01-02 15:04:05"), clip(l.Error, 80))
			}
			total += len(letters)
		}
		fmt.Fprintf(w, "%d dead-lettered\n", total)
		return w.Flush()
	case "show":
		for _, q := range queues {
			letters, err := dlq.List(ctx, sqsc, q.DLQURL, 0)
			if err != nil {
				return err
			}
			if i := slices.IndexFunc(letters, func(l dlq.Letter) bool { return l.ID == showID }); i >= 0 {
				l := letters[i]
				enc := json.NewEncoder(c.out)
				enc.SetIndent("", "  ")
				return enc.Encode(map[string]any{
					"handler": q.Handler, "message_id": l.ID, "reason": l.Reason, "error": l.Error,
					"receive_count": l.ReceiveCount, "dead_lettered_at": l.SentAt, "attributes": l.Attributes,
					"body": json.RawMessage(validJSONOr(l.Body)),
				})
			}
		}
		return fmt.Errorf("no dead-lettered message %s", showID)
	case "redrive":
		if *id == "" && *reason == "" && !*all {
			return errors.New("say which: --id ID, --reason R, or --all")
		}
		match := func(l dlq.Letter) bool {
			return (*id == "" || l.ID == *id) && (*reason == "" || l.Reason == *reason)
		}
		total := 0
		for _, q := range queues {
			n, err := dlq.Redrive(ctx, sqsc, q.DLQURL, q.URL, match)
			total += n
			if n > 0 {
				fmt.Fprintf(c.out, "%s: %d redriven\n", q.Handler, n)
			}
			if err != nil {
				return err
			}
		}
		fmt.Fprintf(c.out, "%d messages back in their queues\n", total)
		return nil
	}
	return fmt.Errorf("unknown dlq command %q (list, show, redrive)", sub)
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

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

func validJSONOr(s string) string {
	if json.Valid([]byte(s)) {
		return s
	}
	b, _ := json.Marshal(s)
	return string(b)
}
