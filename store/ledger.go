package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/events"
)

// A handler's effect is one round trip to the database: three or four
// statements pipelined in one batch, which PostgreSQL runs as one implicit
// transaction (a single Sync; an error anywhere rolls all of it back):
//
//  1. the order's lock, pg_advisory_xact_lock on (handler, order): two
//     events of one order (placed and cancelled) are decided one after the
//     other. Transaction-scoped: safe behind a transaction pooler.
//  2. for an effect on shared rows (stock), their row locks (rowLock), in
//     key order. A statement of its own, before the effect: an effect that
//     locked rows in a CTE (SELECT ... FOR UPDATE) and then updated them
//     could, after waiting for another order's commit, decide on the
//     version it locked and update the one its snapshot held, re-read
//     under EvalPlanQual as the newest — stock decided on 1 and taken
//     from 0. Locked by an earlier statement, the rows cannot change after
//     the effect's snapshot is taken: it reads and writes one version.
//  3. the effect, one statement whose first CTE, ledger, writes the
//     (handler, event) ledger row with the payload's fingerprint and whose
//     every change is guarded on that row being new. In READ COMMITTED each
//     statement takes its snapshot when it starts, so this one sees every
//     change committed by whoever held the order's lock before.
//  4. the ledger row's fingerprint: a known event_id with another payload
//     is events.ErrConflict, never a silent skip. A statement of its own: it
//     sees a row the effect's insert waited for and its snapshot could not.
//
// A concurrent duplicate blocks on the lock (or on the ledger's primary
// key) until the first commits, then finds the row: at most one applies the
// effect.

// ledgerCTE is the effect statement's first CTE. Every effect statement
// takes the same first five arguments (ledgerArgs).
const ledgerCTE = `ledger AS (
	INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
	VALUES ($1, $2::uuid, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING 1)`

// ledgerArgs are the arguments of ledgerCTE.
func ledgerArgs(handler string, ev events.Event) []any {
	fp := events.Fingerprint(ev)
	return []any{handler, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp[:]}
}

// rowLock is the statement that locks an effect's shared rows (see above).
type rowLock struct {
	sql  string
	args []any
}

// once runs handler's effect for ev in one round trip (see above); lock,
// if not nil, locks the rows it changes first; effect is the statement,
// args all its arguments (ledgerArgs first). The
// statement's one row starts with whether the ledger row was new (false
// means an earlier copy committed the effect), which once returns; dest
// take its other columns.
func (db *DB) once(ctx context.Context, handler string, ev events.Event, lock *rowLock, effect string, args []any, dest ...any) (bool, error) {
	var (
		first bool
		known []byte
	)
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		b := &pgx.Batch{}
		b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, handler+":"+ev.Order.OrderID)
		if lock != nil {
			b.Queue(lock.sql, lock.args...)
		}
		b.Queue(effect, args...).QueryRow(func(row pgx.Row) error {
			if err := row.Scan(append([]any{&first}, dest...)...); err != nil {
				return fmt.Errorf("read the effect's result: %w", err)
			}
			return nil
		})
		b.Queue(`SELECT fingerprint FROM processed_events WHERE handler = $1 AND event_id = $2::uuid`,
			handler, string(ev.EventID)).QueryRow(func(row pgx.Row) error { return row.Scan(&known) })
		if err := conn.SendBatch(ctx, b).Close(); err != nil {
			return fmt.Errorf("%s %s of order %s: %w", handler, ev.EventType, ev.Order.OrderID, err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if fp := events.Fingerprint(ev); !first && known != nil && !bytes.Equal(known, fp[:]) {
		return false, fmt.Errorf("%s for %s: %w", ev.EventID, handler, events.ErrConflict)
	}
	return first, nil
}

func skuStrings(skus []events.SKU) []string {
	s := make([]string, len(skus))
	for i, sku := range skus {
		s[i] = string(sku)
	}
	return s
}
