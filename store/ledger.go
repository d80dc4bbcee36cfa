package store

import (
	"bytes"
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/events"
)

// A handler's effect is one round trip to the database: one call of its
// function (store/migrations/00010_effect_functions.sql), which in one
// transaction takes the order's lock (pg_advisory_xact_lock on (handler,
// order): two events of one order are decided one after the other;
// transaction-scoped, so safe behind a transaction pooler), for stock the
// product rows' locks, runs the effect — one statement whose first CTE,
// ledger, writes the (handler, event) ledger row with the payload's
// fingerprint and whose every change is guarded on that row being new —
// and, when the row was not new, reads the fingerprint it holds: a known
// event_id with another payload is events.ErrConflict, never a silent
// skip. A concurrent duplicate blocks on the order's lock (or on the
// ledger's primary key) until the first commits, then finds the row: at
// most one applies the effect. Functions rather than statements because
// PL/pgSQL keeps their plans per server connection (the migration says
// what that saves), which no proxy sees as session state.

// The ledger's arguments, the first six of every effect function:
// handler, event_id, event_type, order_id, fingerprint and trace_id (the
// trace the effect was part of, for `orderctl trace`; NULL when not traced).
func ledgerArgs(ctx context.Context, handler string, ev events.Event) []any {
	fp := events.FingerprintOf(ctx, ev)
	return []any{handler, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp[:], traceID(ctx)}
}

// once runs handler's effect for ev in one round trip: call is the
// function's call, args all its arguments (ledgerArgs first). Its one row
// starts with whether the ledger row was new (false: an earlier copy
// committed the effect), which once returns, and the fingerprint the row
// holds when it was not; dest take its other columns.
func (db *DB) once(ctx context.Context, handler string, ev events.Event, call string, args []any, dest ...any) (bool, error) {
	var (
		first bool
		known []byte
	)
	err := db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		if err := conn.QueryRow(ctx, call, args...).Scan(append([]any{&first, &known}, dest...)...); err != nil {
			return fmt.Errorf("%s %s of order %s: %w", handler, ev.EventType, ev.Order.OrderID, err)
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if first || known == nil {
		return first, nil
	}
	if fp := events.FingerprintOf(ctx, ev); !bytes.Equal(known, fp[:]) {
		return false, fmt.Errorf("%s for %s: %w", ev.EventID, handler, events.ErrConflict)
	}
	return false, nil
}

func skuStrings(skus []events.SKU) []string {
	s := make([]string, len(skus))
	for i, sku := range skus {
		s[i] = string(sku)
	}
	return s
}
