package app

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"time"

	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

// MaintenanceConfig configures the retention maintenance every worker runs
// (README "Retention"): every Check, a worker tries to take the
// maintenance lease (a row of the maintenance table: one process at a
// time, fleet-wide, through any proxy); the one that gets it while a run
// is due removes the rows past the retention (store.RemoveExpired),
// renewing the lease between batches, records the run and makes the next
// one due after Interval. Every check also reads the last successful run
// and the tables' sizes into the metrics, so every worker reports the
// fleet's figures.
type MaintenanceConfig struct {
	// Off turns the maintenance off in this process (MAINTENANCE_INTERVAL=0:
	// another process, `orderctl maintain` on a schedule say, runs it).
	Off bool
	// Retention is the age past which the ledger's rows, settled email
	// claims and sent outbox rows go. Defaults to the topology's rule
	// (topology.Topology.LedgerRetention); LEDGER_RETENTION, which the
	// worker refuses below the rule's minimum. Tests squeeze it to seconds.
	Retention time.Duration
	// Interval is how often a run is due, for the whole fleet. Defaults to
	// MaintenanceIntervalDefault.
	Interval time.Duration
	// Check is how often each worker looks, with 10 % jitter. Defaults to
	// Interval, at most MaintenanceCheckMax.
	Check time.Duration
	// Removal tunes the batches. Its Retention and BetweenFunc are set
	// here; its BatchFunc, if set, is called after the metrics' own (a
	// test's record of the batches).
	Removal store.RetentionConfig
}

// Maintenance defaults.
const (
	MaintenanceIntervalDefault = 10 * time.Minute
	MaintenanceCheckMax        = time.Minute
	// MaintenanceTask is the maintenance table's row of the retention.
	MaintenanceTask = "retention"
	// maintenanceLease is how long a run holds the lease between renewals
	// (each batch renews it): a worker that dies mid-run leaves the task to
	// another after this.
	maintenanceLease = time.Minute
	// maintenanceCheckUntilKnown is how often a worker checks while it has
	// seen no successful run yet.
	maintenanceCheckUntilKnown = 5 * time.Second
	// maintenanceBookkeeping bounds recording a run, even at shutdown.
	maintenanceBookkeeping = 5 * time.Second
)

func (c MaintenanceConfig) withDefaults(top topology.Topology) MaintenanceConfig {
	if c.Retention <= 0 {
		c.Retention, _ = top.LedgerRetention()
	}
	if c.Interval <= 0 {
		c.Interval = MaintenanceIntervalDefault
	}
	if c.Check <= 0 {
		c.Check = min(c.Interval, MaintenanceCheckMax)
	}
	return c
}

// MaintenanceRun is what one maintenance step did.
type MaintenanceRun struct {
	// Ran is false when another process held the lease or no run was due.
	Ran    bool
	Result store.RetentionResult
	Status store.MaintenanceStatus
	Sizes  []store.TableSize
}

// maintainer runs the maintenance for one process.
type maintainer struct {
	db     *store.DB
	mt     *store.Maintenance
	cfg    MaintenanceConfig
	m      *metrics.Metrics
	log    *slog.Logger
	holder string
	// failing is set while runs fail, so that an episode is logged once.
	failing bool
}

func newMaintainer(db *store.DB, cfg MaintenanceConfig, top topology.Topology, m *metrics.Metrics, log *slog.Logger) *maintainer {
	return &maintainer{db: db, mt: store.NewMaintenance(db, MaintenanceTask), cfg: cfg.withDefaults(top), m: metrics.Or(m), log: log, holder: holderToken()}
}

// holderToken names this process in the maintenance table: host, pid and
// a random part (two workers in one process, in tests, differ).
func holderToken() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = crand.Read(b)
	return fmt.Sprintf("%s:%d:%s", host, os.Getpid(), hex.EncodeToString(b))
}

// maintain checks every cfg.Check (the first check at once) until ctx ends.
func maintain(ctx context.Context, db *store.DB, cfg MaintenanceConfig, top topology.Topology, m *metrics.Metrics, log *slog.Logger) {
	mr := newMaintainer(db, cfg, top, m, log)
	log.Info("retention maintenance on", "retention", topology.FormatDays(mr.cfg.Retention), "interval", mr.cfg.Interval.String())
	for {
		run, _ := mr.step(ctx, false)
		check := mr.cfg.Check
		if run.Status.LastSuccess.IsZero() {
			// No success seen yet (a new deployment, another worker's
			// first run in progress, or failures): look again soon, so
			// that the metrics of the last success appear within seconds.
			check = min(check, maintenanceCheckUntilKnown)
		}
		jitter := time.Duration(rand.Int64N(int64(check)/10 + 1)) //nolint:gosec // G404: spreading checks needs no secret randomness
		t := time.NewTimer(check - check/20 + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// RunMaintenance runs one maintenance step, as a worker's check does
// (`orderctl maintain`); force runs it even when it is not due. It never
// runs beside another process's run: it needs the lease.
func RunMaintenance(ctx context.Context, db *store.DB, cfg MaintenanceConfig, top topology.Topology, force bool, m *metrics.Metrics, log *slog.Logger) (MaintenanceRun, error) {
	return newMaintainer(db, cfg, top, m, log).step(ctx, force)
}

// step is one check: take the lease if a run is due, run, record; then
// read the status and the sizes into the metrics.
func (mr *maintainer) step(ctx context.Context, force bool) (MaintenanceRun, error) {
	var out MaintenanceRun
	taken, err := mr.mt.Take(ctx, mr.holder, maintenanceLease, force)
	if err == nil && taken {
		out.Ran = true
		out.Result, err = mr.run(ctx)
	}
	if err != nil && ctx.Err() == nil {
		if !mr.failing {
			mr.log.Warn("retention maintenance failing; rows past the retention wait for the next run", "err", err)
		}
		mr.failing = true
	} else if err == nil && mr.failing {
		mr.log.Info("retention maintenance running again")
		mr.failing = false
	}
	status, found, serr := mr.mt.Status(ctx)
	if serr == nil && found {
		out.Status = status
		if !status.LastSuccess.IsZero() {
			mr.m.MaintenanceLastSuccess.Set(float64(status.LastSuccess.UnixMilli()) / 1000)
		}
	}
	sizes, zerr := mr.db.TableSizes(ctx)
	if zerr == nil {
		out.Sizes = sizes
		for _, s := range sizes {
			mr.m.TableRows.WithLabelValues(s.Table).Set(float64(s.Rows))
			mr.m.TableBytes.WithLabelValues(s.Table).Set(float64(s.Bytes))
		}
	}
	return out, errors.Join(err, serr, zerr)
}

// run removes what is past the retention holding the lease, and records
// the run (or gives the lease back when it failed).
func (mr *maintainer) run(ctx context.Context) (store.RetentionResult, error) {
	rc := mr.cfg.Removal
	rc.Retention = mr.cfg.Retention
	also := rc.BatchFunc
	rc.BatchFunc = func(table string, rows int, took time.Duration) {
		mr.m.MaintenanceBatch.Observe(took.Seconds())
		mr.m.MaintenanceRemoved.WithLabelValues(table).Add(float64(rows))
		if also != nil {
			also(table, rows, took)
		}
	}
	rc.BetweenFunc = func(ctx context.Context) error { return mr.mt.Renew(ctx, mr.holder, maintenanceLease) }
	res, err := mr.db.RemoveExpired(ctx, rc)
	// The run's record is written even when ctx ended (shutdown), within
	// its own bound.
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maintenanceBookkeeping)
	defer cancel()
	if err != nil {
		mr.m.MaintenanceRuns.WithLabelValues("failed").Inc()
		return res, errors.Join(fmt.Errorf("retention run: %w", err), mr.mt.Release(bctx, mr.holder))
	}
	next := mr.cfg.Interval
	if !res.Complete {
		next = 0 // stopped at its bound: the next check goes on
	}
	if err := mr.mt.Finish(bctx, mr.holder, res.Removed, next); err != nil {
		mr.m.MaintenanceRuns.WithLabelValues("failed").Inc()
		return res, fmt.Errorf("retention run removed %v: %w", res.Removed, err)
	}
	mr.m.MaintenanceRuns.WithLabelValues("ok").Inc()
	if n := res.Removed[store.TableLedger] + res.Removed[store.TableClaims] + res.Removed[store.TableOutbox]; n > 0 {
		mr.log.Info("retention run", "ledger_rows", res.Removed[store.TableLedger], "claims", res.Removed[store.TableClaims],
			"outbox_rows", res.Removed[store.TableOutbox], "batches", res.Batches, "longest_batch", res.LongestBatch.String(), "complete", res.Complete)
	}
	return res, nil
}
