package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

// maintainCmd runs one retention step now, as a worker's check does: it
// takes the maintenance lease (so never beside a worker's run), removes
// what is past LEDGER_RETENTION and records the run. Without --force it
// runs only when a run is due. For a deployment whose workers run with
// MAINTENANCE_INTERVAL=0 (a schedule runs this instead), and for an
// operator who wants the tables trimmed now.
func maintainCmd(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("maintain")
	force := fs.Bool("force", false, "run even when the next run is not due yet (never beside another process's run)")
	asJSON := fs.Bool("json", false, "print one JSON object")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	run, err := app.RunMaintenance(ctx, db, app.MaintenanceConfig{Retention: c.Common.Retention}, c.Common.Topology(), *force, nil, c.Log)
	if perr := printMaintenance(c.Out, run, c.Common.Retention, *asJSON); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("maintain: %w", err)
	}
	return nil
}

func printMaintenance(out io.Writer, run app.MaintenanceRun, retention time.Duration, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(map[string]any{"ran": run.Ran, "result": run.Result, "status": run.Status, "tables": run.Sizes})
		if err != nil {
			return fmt.Errorf("encode: %w", err)
		}
		if _, err := fmt.Fprintln(out, string(b)); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		return nil
	}
	if !run.Ran {
		fmt.Fprintf(out, "not run: another process holds the maintenance lease, or the next run is only due at %s (--force runs it now)\n",
			run.Status.DueAt.UTC().Format(time.RFC3339))
	} else {
		r := run.Result
		fmt.Fprintf(out, "removed what is older than %s: %d ledger rows, %d email claims, %d outbox rows, in %d batches (the longest %s)\n",
			topology.FormatDays(retention), r.Removed[store.TableLedger], r.Removed[store.TableClaims], r.Removed[store.TableOutbox],
			r.Batches, r.LongestBatch.Round(time.Microsecond))
		if !r.Complete {
			fmt.Fprintln(out, "stopped at the bound of one run; the next run goes on")
		}
	}
	return printSizes(out, run.Sizes, run.Status)
}

// printSizes writes the retained tables' sizes and the last run.
func printSizes(out io.Writer, sizes []store.TableSize, st store.MaintenanceStatus) error {
	w := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "table\trows\ton disk\t")
	for _, s := range sizes {
		rows := fmt.Sprintf("~%d", s.Rows)
		if s.Exact {
			rows = strconv.FormatInt(s.Rows, 10)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t\n", s.Table, rows, bytesIEC(s.Bytes))
	}
	last := "never"
	if !st.LastSuccess.IsZero() {
		last = st.LastSuccess.UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(w, "last retention run\t%s\t\t\n", last)
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write sizes: %w", err)
	}
	return nil
}

// bytesIEC writes n bytes in KiB, MiB or GiB.
func bytesIEC(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 3; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGT"[exp])
}
