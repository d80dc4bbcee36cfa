package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// RetentionConfig configures RemoveExpired, which removes the rows that
// exist only to keep the pipeline safe, once no copy of their event can
// still arrive (the rule, and its default,
// come from the topology: topology.Topology.LedgerRetention):
//
//	table             a row goes when                                   index (migration 00009)
//	processed_events  processed_at is older than the retention          processed_events_processed_at
//	notifications     the claim was made and settled before the cutoff: notifications_created_at
//	                  sent (sent_at, the moment its ledger row was
//	                  written, in the same statement), refused
//	                  ('failed'), or a lease that ran out before it
//	outbox            sent_at is older than the retention (an unsent   outbox_sent_at (partial)
//	                  row is never removed, however old)
//
// The business records (invoices, stock movements, reservations,
// redemptions) are never touched.
//
// Why batched deletes and not partitions (README "Retention", measured):
// processed_events' key is (handler, event_id), and the ledger's whole
// point is that a copy of an event finds its row. A partitioned table's
// unique key must include the partition key, so a table partitioned by
// time could hold the same (handler, event_id) once per partition: a copy
// handled on another day than the first would be applied again. Keeping
// one table keeps the key global; what partitions would buy (dropping a
// day in ~0.1 s instead of deleting it in ~60 batches of 30 ms) is cheap
// enough to forgo.
//
// Each batch is one statement, so one transaction of its own, through the
// pool (any proxy: no session state, nothing set): it locks at most
// BatchSize rows, all of them past the retention, which no handler
// touches (by the rule, no copy of their events can arrive), with SKIP
// LOCKED so that it never waits for a row someone else holds. Its only
// table lock is ROW EXCLUSIVE, which the handlers' own inserts take too. A
// handler could wait on a batch only for a row past the retention — a
// copy arriving later than the rule allows — and then for at most the
// batch, whose size adapts to keep it near BatchTarget.
type RetentionConfig struct {
	// Retention is the age past which rows go. Required.
	Retention time.Duration
	// BatchSize is the most rows one batch removes, and what the first
	// batch of each table asks for. Defaults to RetentionBatchDefault.
	BatchSize int
	// BatchTarget is the time a batch should take: a slower batch halves
	// the next one, one under a quarter of it doubles the next (up to
	// BatchSize). Defaults to RetentionBatchTargetDefault.
	BatchTarget time.Duration
	// Pause is the wait between batches, which leaves the database to the
	// handlers. Defaults to BatchTarget.
	Pause time.Duration
	// MaxRows bounds one run, all tables together; a run that reaches it
	// reports Complete false, and the next run goes on. Defaults to
	// RetentionMaxRowsDefault.
	MaxRows int
	// BatchFunc, if set, is told of each batch: the table, the rows it
	// removed and how long it took (the time its row locks were held).
	BatchFunc func(table string, rows int, took time.Duration)
	// BetweenFunc, if set, runs between batches (renewing a lease); an
	// error ends the run with it.
	BetweenFunc func(ctx context.Context) error
}

// Retention defaults.
const (
	RetentionBatchDefault       = 5000
	RetentionBatchTargetDefault = 50 * time.Millisecond
	RetentionMaxRowsDefault     = 1_000_000
	// minRetentionBatch is the smallest batch the sizing goes down to.
	minRetentionBatch = 10
)

func (c RetentionConfig) withDefaults() RetentionConfig {
	if c.BatchSize <= 0 {
		c.BatchSize = RetentionBatchDefault
	}
	if c.BatchTarget <= 0 {
		c.BatchTarget = RetentionBatchTargetDefault
	}
	if c.Pause <= 0 {
		c.Pause = c.BatchTarget
	}
	if c.MaxRows <= 0 {
		c.MaxRows = RetentionMaxRowsDefault
	}
	return c
}

// Validate names the first bad field.
func (c RetentionConfig) Validate() error {
	if c.Retention <= 0 {
		return errors.New("store: RetentionConfig.Retention is required")
	}
	return nil
}

// RetentionResult is what a run removed.
type RetentionResult struct {
	// Removed counts the rows removed, by table.
	Removed map[string]int64 `json:"removed"`
	// Batches is how many batches ran, and LongestBatch the longest.
	Batches      int           `json:"batches"`
	LongestBatch time.Duration `json:"longest_batch_ns"`
	// Complete says the run did not stop at MaxRows. (Rows another
	// transaction held were skipped either way: the next run takes them.)
	Complete bool `json:"complete"`
}

// Retained tables, in the order a run removes from them.
const (
	TableLedger = "processed_events"
	TableClaims = "notifications"
	TableOutbox = "outbox"
)

// RetainedTables are the tables retention removes from.
var RetainedTables = []string{TableLedger, TableClaims, TableOutbox}

// RetentionMarker starts every statement of a removal, so that an
// operator (or a test sampling pg_stat_activity) can tell them apart.
const RetentionMarker = "/* orderpipe retention */"

// retentionDeletes are the batch statements: $1 the cutoff, $2 the batch
// size. The rows are picked in the table's time order by its index and
// locked with SKIP LOCKED, then deleted by their ctid (a TID scan: no
// second index lookup).
var retentionDeletes = map[string]string{
	TableLedger: RetentionMarker + ` DELETE FROM processed_events WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM processed_events WHERE processed_at < $1
		ORDER BY processed_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	TableClaims: RetentionMarker + ` DELETE FROM notifications WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM notifications
		WHERE created_at < $1 AND coalesce(sent_at, created_at) < $1 AND coalesce(lease_until, '-infinity') < $1
		ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
	TableOutbox: RetentionMarker + ` DELETE FROM outbox WHERE ctid = ANY (ARRAY(
		SELECT ctid FROM outbox WHERE sent_at IS NOT NULL AND sent_at < $1
		ORDER BY sent_at LIMIT $2 FOR UPDATE SKIP LOCKED))`,
}

// RemoveExpired removes, table by table, the rows older than the
// retention, in batches (see RetentionConfig). The cutoff is the
// database's clock at the start of the run minus the retention, the clock
// that wrote processed_at. It returns what it removed, even with an error.
func (db *DB) RemoveExpired(ctx context.Context, cfg RetentionConfig) (RetentionResult, error) {
	cfg = cfg.withDefaults()
	res := RetentionResult{Removed: map[string]int64{}}
	if err := cfg.Validate(); err != nil {
		return res, err
	}
	var cutoff time.Time
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		return conn.QueryRow(ctx, `SELECT now() - $1 * interval '1 millisecond'`, cfg.Retention.Milliseconds()).Scan(&cutoff)
	})
	if err != nil {
		return res, fmt.Errorf("retention: read the cutoff: %w", err)
	}
	res.Complete = true
	total := 0
	for _, table := range RetainedTables {
		size := cfg.BatchSize
		for {
			if total >= cfg.MaxRows {
				res.Complete = false
				return res, nil
			}
			ask := min(size, cfg.MaxRows-total)
			n, took, err := db.removeBatch(ctx, table, cutoff, ask)
			if err != nil {
				return res, err
			}
			res.Batches++
			res.LongestBatch = max(res.LongestBatch, took)
			res.Removed[table] += int64(n)
			total += n
			if cfg.BatchFunc != nil {
				cfg.BatchFunc(table, n, took)
			}
			if n < ask {
				break // nothing more past the cutoff (or only rows someone else holds: the next run's)
			}
			size = nextBatch(size, took, cfg)
			if err := pause(ctx, cfg); err != nil {
				return res, err
			}
		}
	}
	return res, nil
}

// removeBatch removes up to n rows of table older than cutoff in one
// statement; it returns how many and how long the statement took.
func (db *DB) removeBatch(ctx context.Context, table string, cutoff time.Time, n int) (int, time.Duration, error) {
	var (
		removed int
		took    time.Duration
	)
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		start := time.Now()
		tag, err := conn.Exec(ctx, retentionDeletes[table], cutoff, n)
		took = time.Since(start)
		if err != nil {
			return fmt.Errorf("delete a batch: %w", err)
		}
		removed = int(tag.RowsAffected())
		return nil
	})
	if err != nil {
		return 0, took, fmt.Errorf("retention: remove from %s: %w", table, err)
	}
	return removed, took, nil
}

// nextBatch sizes the next batch from how long the last one took.
func nextBatch(size int, took time.Duration, cfg RetentionConfig) int {
	switch {
	case took > cfg.BatchTarget:
		return max(size/2, minRetentionBatch)
	case took < cfg.BatchTarget/4:
		return min(size*2, cfg.BatchSize)
	}
	return size
}

// pause waits cfg.Pause, then runs BetweenFunc.
func pause(ctx context.Context, cfg RetentionConfig) error {
	t := time.NewTimer(cfg.Pause)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("retention: %w", context.Cause(ctx))
	case <-t.C:
	}
	if cfg.BetweenFunc != nil {
		return cfg.BetweenFunc(ctx)
	}
	return nil
}
