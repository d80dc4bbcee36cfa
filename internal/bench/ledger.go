package bench

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
)

// The ledger phase's fill defaults: a year at 100,000 orders a day (three
// ledger rows an order: about 110 million rows).
const (
	LedgerDaysDefault         = 365
	LedgerOrdersPerDayDefault = 100_000
	// ledgerFillPrefix starts the order ids of the generated rows, which
	// the resets of the phase's runs keep.
	ledgerFillPrefix = "fill-"
	// ledgerFillChunk is the orders one INSERT of the fill writes.
	ledgerFillChunk = 1_000_000
	// ledgerMaintenanceInterval is the workers' MAINTENANCE_INTERVAL in the
	// full run, so that the retention runs while orders flow.
	ledgerMaintenanceInterval = 15 * time.Second
)

// LedgerResult is the ledger phase: the pipeline's maximum and the
// database ceiling with the ledger empty and with it pre-filled, in one
// run, and the retained tables' sizes before and after the full run, in
// which the workers' retention removed what the fill put past it.
type LedgerResult struct {
	// The fill: Days of orders within the retention (LEDGER_RETENTION
	// Days) plus one day past it, at OrdersPerDay, three ledger rows an
	// order, generated straight into the table in FillSeconds.
	Days         int        `json:"days"`
	OrdersPerDay int        `json:"orders_per_day"`
	Rows         int64      `json:"rows"`
	FillSeconds  float64    `json:"fill_s"`
	EmptyMax     *RunResult `json:"empty_max,omitempty"`
	EmptyCeiling *RunResult `json:"empty_ceiling,omitempty"`
	FullMax      *RunResult `json:"full_max,omitempty"`
	FullCeiling  *RunResult `json:"full_ceiling,omitempty"`
	// Before is the tables' sizes after the fill, After after the full
	// maximum run; Maintenance the retention's last run by then.
	Before      []store.TableSize        `json:"sizes_before"`
	After       []store.TableSize        `json:"sizes_after"`
	Maintenance *store.MaintenanceStatus `json:"maintenance,omitempty"`
	// The ledger's rows counted (not estimated) after the fill and after
	// the full maximum run, and those of them past the retention.
	RowsBefore    int64 `json:"ledger_rows_before"`
	RowsAfter     int64 `json:"ledger_rows_after"`
	ExpiredBefore int64 `json:"ledger_rows_past_retention_before"`
	ExpiredAfter  int64 `json:"ledger_rows_past_retention_after"`
}

// Ratios are full over empty, for the maximum and the ceiling (0 when a
// run is missing).
func (l *LedgerResult) Ratios() (maxRatio, ceilingRatio float64) {
	r := func(full, empty *RunResult) float64 {
		if full == nil || empty == nil {
			return 0
		}
		return ratio(full.Throughput, empty.Throughput)
	}
	return r(l.FullMax, l.EmptyMax), r(l.FullCeiling, l.EmptyCeiling)
}

// ledger runs the ledger phase: max and ceiling empty, the fill, max (with
// the retention running) and ceiling full.
func (b *Bench) ledger(ctx context.Context) error {
	res := &LedgerResult{Days: b.cfg.LedgerDays, OrdersPerDay: b.cfg.LedgerOrdersPerDay}
	b.res.Ledger = res
	defer func() { b.s.keepLedger = "" }()
	var err error
	b.logf("ledger empty: the pipeline saturated for %s, then the ceiling for %s\n", b.cfg.MaxDuration, b.cfg.CeilingDuration)
	if res.EmptyMax, err = b.runPipeline(ctx, b.ledgerMaxRun("max, ledger empty")); err != nil {
		return err
	}
	if res.EmptyCeiling, err = b.keep(b.ceiling(ctx, b.cfg.CeilingDuration)); err != nil {
		return err
	}
	b.s.keepLedger = ledgerFillPrefix
	if err := b.s.Reset(ctx); err != nil {
		return err
	}
	start := time.Now()
	if res.Rows, err = b.fillLedger(ctx, res.Days, res.OrdersPerDay); err != nil {
		return err
	}
	res.FillSeconds = time.Since(start).Seconds()
	b.logf("filled the ledger with %d rows (%d days + 1 at %d orders a day) in %s\n", res.Rows, res.Days, res.OrdersPerDay, time.Since(start).Round(time.Second))
	if res.Before, err = b.tableSizes(ctx); err != nil {
		return err
	}
	if res.RowsBefore, res.ExpiredBefore, err = b.countLedger(ctx, res.Days); err != nil {
		return err
	}
	if err := b.ledgerFull(ctx, res); err != nil {
		return err
	}
	maxRatio, ceilingRatio := res.Ratios()
	b.logf("ledger full / empty: max %.2f, ceiling %.2f\n", maxRatio, ceilingRatio)
	return nil
}

// ledgerFull runs the maximum (the retention running) and the ceiling on
// the filled ledger, and measures the tables after the maximum.
func (b *Bench) ledgerFull(ctx context.Context, res *LedgerResult) error {
	// The workers of the full run keep the fill's days and run the
	// retention every ledgerMaintenanceInterval, from its start (a fresh
	// maintenance row is due at once).
	if _, err := b.s.Direct.Exec(ctx, `DELETE FROM maintenance`); err != nil {
		return fmt.Errorf("bench: reset the maintenance row: %w", err)
	}
	base := b.cfg.BaseEnv
	b.cfg.BaseEnv = Env(base, map[string]string{
		"LEDGER_RETENTION": fmt.Sprintf("%dd", res.Days), "MAINTENANCE_INTERVAL": ledgerMaintenanceInterval.String(),
	})
	var err error
	res.FullMax, err = b.runPipeline(ctx, b.ledgerMaxRun("max, ledger full"))
	b.cfg.BaseEnv = base
	if err != nil {
		return err
	}
	if res.After, err = b.tableSizes(ctx); err != nil {
		return err
	}
	if res.RowsAfter, res.ExpiredAfter, err = b.countLedger(ctx, res.Days); err != nil {
		return err
	}
	st, found, err := store.NewMaintenance(b.s.Store, app.MaintenanceTask).Status(ctx)
	if err != nil {
		return err
	}
	if found {
		res.Maintenance = &st
	}
	res.FullCeiling, err = b.keep(b.ceiling(ctx, b.cfg.CeilingDuration))
	return err
}

func (b *Bench) ledgerMaxRun(name string) pipelineRun {
	return pipelineRun{name: name, argv: b.cfg.WorkerArgv, duration: b.cfg.MaxDuration, warmup: 5 * time.Second, procEvery: time.Second}
}

// tableSizes analyses the retained tables (their row estimates come from
// the statistics) and reads their sizes.
func (b *Bench) tableSizes(ctx context.Context) ([]store.TableSize, error) {
	if _, err := b.s.Direct.Exec(ctx, `ANALYZE `+strings.Join(store.RetainedTables, ", ")); err != nil {
		return nil, fmt.Errorf("bench: analyze: %w", err)
	}
	return b.s.Store.TableSizes(ctx)
}

// countLedger counts the ledger's rows, and those older than days.
func (b *Bench) countLedger(ctx context.Context, days int) (rows, expired int64, err error) {
	err = b.s.Direct.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE processed_at < now() - $1 * interval '1 day') FROM processed_events`, days).
		Scan(&rows, &expired)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: count the ledger: %w", err)
	}
	return rows, expired, nil
}

// ledgerIndex is an index of processed_events, or the constraint it backs.
type ledgerIndex struct {
	name, def, constraint, constraintDef string
}

// fillLedger writes (days+1) × perDay orders' ledger rows (three each,
// their processed_at spread evenly over the last days+1 days) straight
// into processed_events, in one transaction: the table's indexes are
// dropped, the rows inserted in chunks and the indexes built again (a
// sort each, much faster than inserting into three B-trees, one keyed by
// random UUIDs). Interrupted, it leaves the table as it was.
func (b *Bench) fillLedger(ctx context.Context, days, perDay int) (int64, error) {
	orders := int64(days+1) * int64(perDay)
	var rows int64
	err := pgx.BeginFunc(ctx, b.s.Direct, func(tx pgx.Tx) error {
		idx, err := ledgerIndexes(ctx, tx)
		if err != nil {
			return err
		}
		for _, i := range idx {
			drop := `DROP INDEX ` + pgx.Identifier{i.name}.Sanitize()
			if i.constraint != "" {
				drop = `ALTER TABLE processed_events DROP CONSTRAINT ` + pgx.Identifier{i.constraint}.Sanitize()
			}
			if _, err := tx.Exec(ctx, drop); err != nil {
				return fmt.Errorf("drop %s: %w", i.name, err)
			}
		}
		start := time.Now()
		for from := int64(1); from <= orders; from += ledgerFillChunk {
			to := min(from+ledgerFillChunk-1, orders)
			tag, err := tx.Exec(ctx, `
				INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, processed_at)
				SELECT h, gen_random_uuid(), 'order.placed', $1 || i, sha256(int8send(i)),
				       now() - $4 * interval '1 day' * (1 - i::float8 / $3)
				FROM generate_series($2::bigint, $5::bigint) i, unnest(ARRAY['billing', 'inventory', 'notification']) h`,
				ledgerFillPrefix, from, orders, days+1, to)
			if err != nil {
				return fmt.Errorf("insert orders %d to %d: %w", from, to, err)
			}
			rows += tag.RowsAffected()
			b.logf("  %d of %d ledger rows in %s\n", rows, 3*orders, time.Since(start).Round(time.Second))
		}
		if _, err := tx.Exec(ctx, `SET LOCAL maintenance_work_mem = '1GB'`); err != nil {
			return fmt.Errorf("set maintenance_work_mem: %w", err)
		}
		for _, i := range idx {
			create := i.def
			if i.constraint != "" {
				create = `ALTER TABLE processed_events ADD CONSTRAINT ` + pgx.Identifier{i.constraint}.Sanitize() + ` ` + i.constraintDef
			}
			t := time.Now()
			if _, err := tx.Exec(ctx, create); err != nil {
				return fmt.Errorf("build %s: %w", i.name, err)
			}
			b.logf("  built %s in %s\n", i.name, time.Since(t).Round(time.Second))
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bench: fill the ledger: %w", err)
	}
	return rows, nil
}

// ledgerIndexes reads processed_events' indexes and their definitions.
func ledgerIndexes(ctx context.Context, tx pgx.Tx) ([]ledgerIndex, error) {
	rows, err := tx.Query(ctx, `
		SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid), coalesce(c.conname, ''), coalesce(pg_get_constraintdef(c.oid), '')
		FROM pg_index i LEFT JOIN pg_constraint c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
		WHERE i.indrelid = 'processed_events'::regclass
		ORDER BY c.conname IS NULL, 1`)
	if err != nil {
		return nil, fmt.Errorf("read the ledger's indexes: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (ledgerIndex, error) {
		var i ledgerIndex
		if err := r.Scan(&i.name, &i.def, &i.constraint, &i.constraintDef); err != nil {
			return i, fmt.Errorf("scan: %w", err)
		}
		return i, nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the ledger's indexes: %w", err)
	}
	return out, nil
}

func completed(r *RunResult) int {
	if r == nil {
		return 0
	}
	return r.Completed
}

// writeLedger writes the ledger phase's table: each run empty and full,
// the ratio, the fill and the sizes.
func (r *Result) writeLedger(b *strings.Builder) {
	l := r.Ledger
	if l == nil {
		return
	}
	maxRatio, ceilingRatio := l.Ratios()
	fmt.Fprintf(b, "\nLedger empty and pre-filled (%d days at %d orders a day within LEDGER_RETENTION %dd, plus one day past it: %d rows, generated in %.0f s):\n\n",
		l.Days, l.OrdersPerDay, l.Days, l.Rows, l.FillSeconds)
	b.WriteString("| measurement | ledger empty, orders/s | ledger full, orders/s | full / empty |\n|---|--:|--:|--:|\n")
	tp := func(run *RunResult) string {
		if run == nil {
			return ""
		}
		return fmt.Sprintf("%.0f", run.Throughput)
	}
	fmt.Fprintf(b, "| pipeline, max sustained (the retention running in the full run) | %s | %s | %.2f |\n", tp(l.EmptyMax), tp(l.FullMax), maxRatio)
	fmt.Fprintf(b, "| ceiling: the handlers straight on the database | %s | %s | %.2f |\n", tp(l.EmptyCeiling), tp(l.FullCeiling), ceilingRatio)
	b.WriteString("\n| table | rows after the fill | on disk | rows after the full run (retention ran) | on disk |\n|---|--:|--:|--:|--:|\n")
	for i, s := range l.Before {
		if i >= len(l.After) {
			break
		}
		a := l.After[i]
		fmt.Fprintf(b, "| %s | %d | %s | %d | %s |\n", s.Table, s.Rows, mib(s.Bytes), a.Rows, mib(a.Bytes))
	}
	fmt.Fprintf(b, "\nLedger rows counted: %d after the fill (%d past the retention), %d after the full run (%d past it): the run added %d ledger rows while the retention removed %d.\n",
		l.RowsBefore, l.ExpiredBefore, l.RowsAfter, l.ExpiredAfter, 3*completed(l.FullMax), l.ExpiredBefore-l.ExpiredAfter)
	if m := l.Maintenance; m != nil && !m.LastSuccess.IsZero() {
		fmt.Fprintf(b, "The retention's last completed run removed %v.\n", m.LastRemoved)
	}
}
