package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Maintenance is a maintenance task's row in the maintenance table
// (migration 00009): a lease that one process holds at a time, the time
// the task is due again, and its last successful run. It is a row, not a
// session advisory lock, so it works the same through PgBouncer in
// transaction mode and RDS Proxy; a holder that dies leaves its lease to
// run out.
//
//	state     holder, lease_until     due_at
//	idle      NULL                    when it runs next
//	running   the holder's token      (unchanged until the run ends)
//
// Take moves idle (and due) or a lease that ran out to running; Renew
// extends a lease its holder still has; Finish records a success and
// schedules the next run; Release gives the lease back after a failure,
// leaving the task due.
type Maintenance struct {
	db   *DB
	task string
}

// NewMaintenance returns task's row on db.
func NewMaintenance(db *DB, task string) *Maintenance { return &Maintenance{db: db, task: task} }

// MaintenanceStatus is what the maintenance row says.
type MaintenanceStatus struct {
	// DueAt is when the task runs next.
	DueAt time.Time `json:"due_at"`
	// LastSuccess is the end of its last successful run (zero: none yet),
	// and LastRemoved what that run removed, by table.
	LastSuccess time.Time        `json:"last_success_at,omitzero"`
	LastRemoved map[string]int64 `json:"last_removed,omitempty"`
	// Holder holds the lease until LeaseUntil, when running.
	Holder     string    `json:"holder,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`
}

// ErrLeaseLost is returned by Renew and Finish when the holder's lease ran
// out and another process may have taken the task.
var ErrLeaseLost = errors.New("store: the maintenance lease was lost")

// Take takes the task's lease for holder, for lease, if the task is due
// (or force is set) and no live lease is held by another. It reports
// whether it did.
func (m *Maintenance) Take(ctx context.Context, holder string, lease time.Duration, force bool) (bool, error) {
	var taken bool
	err := m.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, `
			INSERT INTO maintenance AS m (task, holder, lease_until) VALUES ($1, $2, now() + $3 * interval '1 millisecond')
			ON CONFLICT (task) DO UPDATE SET holder = excluded.holder, lease_until = excluded.lease_until
			WHERE (m.due_at <= now() OR $4) AND (m.lease_until IS NULL OR m.lease_until < now() OR m.holder = excluded.holder)
			RETURNING true`, m.task, holder, lease.Milliseconds(), force).Scan(&taken)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("take the %s lease: %w", m.task, err)
	}
	return taken, nil
}

// Renew extends holder's lease to lease from now, or returns ErrLeaseLost.
func (m *Maintenance) Renew(ctx context.Context, holder string, lease time.Duration) error {
	return m.update(ctx, "renew", `
		UPDATE maintenance SET lease_until = now() + $3 * interval '1 millisecond'
		WHERE task = $1 AND holder = $2 AND lease_until >= now()`, m.task, holder, lease.Milliseconds())
}

// Finish records holder's successful run (what it removed, by table),
// gives the lease back and makes the task due again after next (0: at
// once, for a run that stopped at its bound).
func (m *Maintenance) Finish(ctx context.Context, holder string, removed map[string]int64, next time.Duration) error {
	b, err := json.Marshal(removed)
	if err != nil {
		return fmt.Errorf("finish %s: %w", m.task, err)
	}
	return m.update(ctx, "finish", `
		UPDATE maintenance SET holder = NULL, lease_until = NULL, last_success_at = now(), last_removed = $3::text::jsonb,
		       due_at = now() + $4 * interval '1 millisecond'
		WHERE task = $1 AND holder = $2`, m.task, holder, string(b), next.Milliseconds())
}

// Release gives holder's lease back without a success: the task stays due.
func (m *Maintenance) Release(ctx context.Context, holder string) error {
	err := m.update(ctx, "release", `UPDATE maintenance SET holder = NULL, lease_until = NULL WHERE task = $1 AND holder = $2`, m.task, holder)
	if errors.Is(err, ErrLeaseLost) {
		return nil // nothing to give back
	}
	return err
}

func (m *Maintenance) update(ctx context.Context, what, sql string, args ...any) error {
	var n int64
	err := m.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		tag, err := conn.Exec(ctx, sql, args...)
		if err != nil {
			return fmt.Errorf("update: %w", err)
		}
		n = tag.RowsAffected()
		return nil
	})
	switch {
	case err != nil:
		return fmt.Errorf("%s the %s lease: %w", what, m.task, err)
	case n == 0:
		return fmt.Errorf("%s the %s lease: %w", what, m.task, ErrLeaseLost)
	}
	return nil
}

// Status reads the task's row; ok is false when the task never ran.
func (m *Maintenance) Status(ctx context.Context) (MaintenanceStatus, bool, error) {
	var (
		s           MaintenanceStatus
		last, until *time.Time
		holder      *string
		removed     *string
		found       = true
	)
	err := m.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		err := conn.QueryRow(ctx, `SELECT due_at, last_success_at, last_removed::text, holder, lease_until FROM maintenance WHERE task = $1`, m.task).
			Scan(&s.DueAt, &last, &removed, &holder, &until)
		if errors.Is(err, pgx.ErrNoRows) {
			found = false
			return nil
		}
		if err != nil {
			return fmt.Errorf("select: %w", err)
		}
		return nil
	})
	if err != nil {
		return s, false, fmt.Errorf("read the %s status: %w", m.task, err)
	}
	if last != nil {
		s.LastSuccess = *last
	}
	if until != nil {
		s.LeaseUntil = *until
	}
	if holder != nil {
		s.Holder = *holder
	}
	if removed != nil {
		if err := json.Unmarshal([]byte(*removed), &s.LastRemoved); err != nil {
			return s, found, fmt.Errorf("read the %s status: %w", m.task, err)
		}
	}
	return s, found, nil
}

// TableSize is a table's size: its rows and its bytes on disk.
type TableSize struct {
	Table string `json:"table"`
	// Rows is PostgreSQL's estimate (the statistics' rows per page, times
	// the pages the table has now), exact when Exact: a table never
	// analysed is counted.
	Rows  int64 `json:"rows"`
	Exact bool  `json:"rows_exact"`
	// Bytes is the table's whole size on disk: heap, indexes and TOAST
	// (pg_total_relation_size).
	Bytes int64 `json:"bytes"`
}

// TableSizes reads the retained tables' sizes from the catalog, without
// scanning them (a year of ledger rows is not counted row by row).
func (db *DB) TableSizes(ctx context.Context) ([]TableSize, error) {
	var out []TableSize
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		rows, err := conn.Query(ctx, `
			SELECT c.relname,
			       CASE WHEN c.reltuples < 0 THEN -1
			            WHEN c.relpages = 0 THEN 0
			            ELSE (c.reltuples / c.relpages * (pg_relation_size(c.oid) / current_setting('block_size')::int))::bigint END,
			       pg_total_relation_size(c.oid)
			FROM unnest($1::text[]) WITH ORDINALITY AS t(name, i)
			JOIN pg_class c ON c.oid = to_regclass(t.name)
			ORDER BY t.i`, RetainedTables)
		if err != nil {
			return fmt.Errorf("read the catalog: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var s TableSize
			if err := rows.Scan(&s.Table, &s.Rows, &s.Bytes); err != nil {
				return fmt.Errorf("read the catalog: %w", err)
			}
			out = append(out, s)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read the catalog: %w", err)
		}
		for i := range out {
			if out[i].Rows >= 0 {
				continue
			}
			// Never analysed: small, or new; count it.
			if err := conn.QueryRow(ctx, `SELECT count(*) FROM `+pgx.Identifier{out[i].Table}.Sanitize()).Scan(&out[i].Rows); err != nil {
				return fmt.Errorf("count %s: %w", out[i].Table, err)
			}
			out[i].Exact = true
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read table sizes: %w", err)
	}
	return out, nil
}
