package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/notification"
)

// EmailClaimTTLDefault is how long a claim on an email keeps a concurrent
// duplicate from sending it too. It must exceed the SMTP send timeout plus
// the time the handler keeps trying to record an accepted email
// (notification.Config.RecordFor), so no copy takes over while the first
// still tries to record; app derives RecordFor from it.
const EmailClaimTTLDefault = 2 * time.Minute

func (db *DB) claimNotification(ctx context.Context, q querier, ev events.Event, kind, recipient, messageID, token string) (notification.Claim, error) {
	fp := events.Fingerprint(ev)
	lease := db.emailClaimTTL.String()
	tag, err := q.Exec(ctx, `
		INSERT INTO notifications (event_id, order_id, kind, recipient, message_id, status, lease_until, fingerprint, claim_token)
		VALUES ($1::uuid, $2, $3, $4, $5, 'sending', now() + $6::interval, $7, $8)
		ON CONFLICT DO NOTHING`,
		string(ev.EventID), ev.Order.OrderID, kind, recipient, messageID, lease, fp[:], token)
	if err != nil {
		return 0, fmt.Errorf("claim notification %s: %w", ev.EventID, err)
	}
	if tag.RowsAffected() == 1 {
		return notification.Claimed, nil
	}
	var previous string
	err = q.QueryRow(ctx, `
		WITH old AS (SELECT status, lease_until FROM notifications WHERE event_id = $1::uuid FOR UPDATE)
		UPDATE notifications n
		SET status = 'sending', attempts = n.attempts + 1, lease_until = now() + $2::interval, claim_token = $4
		FROM old
		WHERE n.event_id = $1::uuid AND n.fingerprint IS NOT DISTINCT FROM $3
		  AND (old.status = 'failed' OR (old.status = 'sending' AND old.lease_until < now()))
		RETURNING old.status`, string(ev.EventID), lease, fp[:], token).Scan(&previous)
	switch {
	case err == nil && previous == "failed":
		return notification.Claimed, nil
	case err == nil:
		return notification.TakenOver, nil
	case !errors.Is(err, pgx.ErrNoRows):
		return 0, fmt.Errorf("take over notification %s: %w", ev.EventID, err)
	}
	var (
		status, holder string
		known          []byte
		remainingMS    int64
	)
	err = q.QueryRow(ctx, `
		SELECT status, fingerprint, coalesce(claim_token, ''), coalesce((extract(epoch FROM lease_until - now()) * 1000)::bigint, 0)
		FROM notifications WHERE event_id = $1::uuid`, string(ev.EventID)).Scan(&status, &known, &holder, &remainingMS)
	if errors.Is(err, pgx.ErrNoRows) && ev.EventType == events.OrderCancelled {
		// Not this event's row, yet the insert found a conflict: the order's
		// other cancellation (out of stock, and by the customer) has the
		// one cancellation email. Record this event as handled, send nothing.
		if _, err := q.Exec(ctx, `
			INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
			VALUES ($1, $2::uuid, $3, $4, $5) ON CONFLICT DO NOTHING`,
			notification.Name, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp[:]); err != nil {
			return 0, fmt.Errorf("record superseded cancellation %s: %w", ev.EventID, err)
		}
		return notification.AlreadySent, nil
	}
	switch {
	case err != nil:
		return 0, fmt.Errorf("read notification %s: %w", ev.EventID, err)
	case known != nil && !bytes.Equal(known, fp[:]):
		return 0, fmt.Errorf("notification %s: %w", ev.EventID, events.ErrConflict)
	case status == "sent":
		return notification.AlreadySent, nil
	case status == "sending" && holder == token:
		// Our own claim, committed while its acknowledgement was lost.
		return notification.Claimed, nil
	}
	return 0, &notification.ClaimedError{Remaining: time.Duration(max(remainingMS, 0)) * time.Millisecond}
}

// AbandonNotification implements notification.Store.
func (db *DB) AbandonNotification(ctx context.Context, ev events.Event) error {
	err := db.guard(func() error {
		return db.exec(ctx, `
		UPDATE notifications SET status = 'failed', lease_until = NULL
		WHERE event_id = $1::uuid AND status = 'sending'`, string(ev.EventID))
	})
	if err != nil {
		return fmt.Errorf("abandon notification %s: %w", ev.EventID, err)
	}
	return nil
}

// CompleteNotification implements notification.Store: the status and the
// ledger marker in one statement, so one round trip (and its own atomic
// transaction) is all that stands between acceptance and record.
func (db *DB) CompleteNotification(ctx context.Context, ev events.Event) error {
	return db.completeNotification(ctx, db.pool, ev)
}

// ReserveRecorder implements notification.Store.
func (db *DB) ReserveRecorder(ctx context.Context) (notification.Recorder, error) {
	var conn *pgxpool.Conn
	err := db.guard(func() (err error) {
		conn, err = db.pool.Acquire(ctx)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reserve a connection for the email: %w", err)
	}
	return &recorder{db: db, conn: conn}, nil
}

type recorder struct {
	db   *DB
	conn *pgxpool.Conn // nil once released
}

// ClaimNotification implements notification.Recorder, in one round trip
// when the email is new: insert the claim; failing that, take over a failed
// send or a claim that ran out; failing that, say why not. It runs on the
// held connection, so it must come before Release.
func (r *recorder) ClaimNotification(ctx context.Context, ev events.Event, kind, recipient, messageID, token string) (notification.Claim, error) {
	var claim notification.Claim
	err := r.db.guard(func() (err error) {
		claim, err = r.db.claimNotification(ctx, r.conn, ev, kind, recipient, messageID, token)
		return err
	})
	return claim, err
}

func (r *recorder) CompleteNotification(ctx context.Context, ev events.Event) error {
	if r.conn == nil {
		return r.db.CompleteNotification(ctx, ev)
	}
	return r.db.completeNotification(ctx, r.conn, ev)
}

// Release gives the connection back; safe to call more than once.
func (r *recorder) Release() {
	if r.conn != nil {
		r.conn.Release()
		r.conn = nil
	}
}

// querier is a pool or one connection held from it.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func (db *DB) completeNotification(ctx context.Context, q querier, ev events.Event) error {
	fp := events.Fingerprint(ev)
	err := db.guard(func() error {
		_, err := q.Exec(ctx, `
		WITH sent AS (
			UPDATE notifications SET status = 'sent', sent_at = now(), lease_until = NULL
			WHERE event_id = $1::uuid RETURNING event_id)
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
		SELECT $2, event_id, $3, $4, $5 FROM sent
		ON CONFLICT DO NOTHING`,
			string(ev.EventID), notification.Name, string(ev.EventType), ev.Order.OrderID, fp[:])
		return err
	})
	if err != nil {
		return fmt.Errorf("record notification %s sent: %w", ev.EventID, err)
	}
	return nil
}
