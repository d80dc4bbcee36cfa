package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/topology"
)

// Report is what `orderctl report --json` prints.
type Report struct {
	admin.Counts
	admin.OrderStates

	DLQ     int64 `json:"dlq"`     // messages in the three DLQs
	Pending int64 `json:"pending"` // messages visible, in flight or delayed in the three queues

	// Tables are the retained tables' sizes (ledger, email claims,
	// outbox) and Maintenance the retention's last run.
	Tables      []store.TableSize        `json:"tables"`
	Maintenance *store.MaintenanceStatus `json:"maintenance,omitempty"`
}

func (c *cli) collect(ctx context.Context, db *store.DB, sqsc *sqs.Client, ap topology.Applied) (Report, error) {
	var r Report
	var err error
	if r.Counts, err = admin.ReadCounts(ctx, db); err != nil {
		return r, err
	}
	if r.OrderStates, err = admin.States(ctx, db, ""); err != nil {
		return r, err
	}
	if r.Tables, err = db.TableSizes(ctx); err != nil {
		return r, err
	}
	st, ran, err := store.NewMaintenance(db, app.MaintenanceTask).Status(ctx)
	if err != nil {
		return r, err
	}
	if ran {
		r.Maintenance = &st
	}
	for _, q := range ap.Queues {
		n, err := topology.Depth(ctx, sqsc, q.URL)
		if err != nil {
			return r, err
		}
		r.Pending += n
		if n, err = topology.Depth(ctx, sqsc, q.DLQURL); err != nil {
			return r, err
		}
		r.DLQ += n
	}
	return r, nil
}

// reporter holds what report and wait need open.
type reporter struct {
	c    *cli
	db   *store.DB
	sqsc *sqs.Client
	ap   topology.Applied
}

func (c *cli) reporter(ctx context.Context) (*reporter, error) {
	cfg, err := c.Common.AWS(ctx)
	if err != nil {
		return nil, err
	}
	ap, err := c.Resolve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	db, err := c.openStore(ctx)
	if err != nil {
		return nil, err
	}
	return &reporter{c: c, db: db, sqsc: sqs.NewFromConfig(cfg), ap: ap}, nil
}

func (r *reporter) collect(ctx context.Context) (Report, error) {
	return r.c.collect(ctx, r.db, r.sqsc, r.ap)
}

func report(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("report")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := c.reporter(ctx)
	if err != nil {
		return err
	}
	defer r.db.Close()
	rep, err := r.collect(ctx)
	if err != nil {
		return err
	}
	return c.print(rep, *asJSON)
}

func (c *cli) print(rep Report, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return fmt.Errorf("encode report: %w", err)
		}
		if _, err := fmt.Fprintln(c.Out, string(b)); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		return nil
	}
	w := tabwriter.NewWriter(c.Out, 0, 0, 2, ' ', tabwriter.AlignRight)
	rows := []struct {
		k string
		v any
	}{
		{"orders", rep.Orders}, {"billed", rep.Billed}, {"invoices voided", rep.InvoicesVoided},
		{"billed total (USD)", fmt.Sprintf("%d.%02d", rep.BilledCents/100, rep.BilledCents%100)},
		{"inventory reserved", rep.InventoryReserved}, {"inventory rejected", rep.InventoryRejected},
		{"emails sent", rep.Notified}, {"confirmations", rep.Confirmations},
		{"dead-lettered", rep.DLQ}, {"pending", rep.Pending},
		{"fulfilled", rep.Fulfilled}, {"cancelled out of stock", rep.CancelledOutOfStock},
		{"cancelled by customer", rep.CancelledByCustomer}, {"inconsistent", inconsistent(rep)},
		{"outbox pending", rep.OutboxPending},
	}
	for _, r := range rows {
		fmt.Fprintf(w, "%s\t%v\t\n", r.k, r.v)
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	var st store.MaintenanceStatus
	if rep.Maintenance != nil {
		st = *rep.Maintenance
	}
	return printSizes(c.Out, rep.Tables, st)
}

func inconsistent(rep Report) string {
	s := strconv.FormatInt(rep.Inconsistent, 10)
	switch {
	case rep.Inconsistent == 0:
	case rep.Pending > 0 || rep.OutboxPending > 0:
		s += " (on their way: messages still pending)"
	default:
		s += " FLAGGED: " + strings.Join(rep.InconsistentOrders, " ")
	}
	return s
}

// fullyHandled says whether n placed orders went through all three handlers
// and nothing is left in the queues.
func (rep Report) fullyHandled(n int64) bool {
	return rep.Orders == n && rep.Billed == n && rep.InventoryReserved+rep.InventoryRejected == n &&
		rep.Confirmations == n && rep.Pending == 0 && rep.OutboxPending == 0 && rep.Inconsistent == 0
}

func wait(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("wait")
	n := fs.Int64("orders", 0, "how many placed orders to wait for (required)")
	timeout := fs.Duration("timeout", 2*time.Minute, "give up after this long")
	asJSON := fs.Bool("json", false, "print the final report as one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n <= 0 {
		return errors.New("--orders N is required")
	}
	r, err := c.reporter(ctx)
	if err != nil {
		return err
	}
	defer r.db.Close()
	deadline := time.Now().Add(*timeout)
	for {
		rep, err := r.collect(ctx)
		if err != nil {
			return err
		}
		done := rep.fullyHandled(*n)
		if done || time.Now().After(deadline) || (rep.Pending == 0 && rep.DLQ > 0) {
			if err := c.print(rep, *asJSON); err != nil {
				return err
			}
			if done && rep.DLQ == 0 {
				return nil
			}
			return fmt.Errorf("not every order was fully handled (want %d orders, %d dead-lettered, %d pending)", *n, rep.DLQ, rep.Pending)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
