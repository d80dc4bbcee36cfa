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

// EmailClaims is the database side of the email claim
// (notification.ClaimStore): one row per email in notifications. Every
// method is one statement through the pool, under the database breaker; no
// connection is held between them, so none is held across an SMTP send.
type EmailClaims struct{ db *DB }

// NewEmailClaims returns the email claim store on db's pool.
func NewEmailClaims(db *DB) *EmailClaims { return &EmailClaims{db: db} }

// oneCancellationEmail is the unique index that gives an order one
// cancellation email however many cancellations it gets.
const oneCancellationEmail = "notifications_one_cancellation"

// claimCall is orderpipe_claim_email's (store/migrations/00011): the
// claim's upsert, whose update only happens when the claim may be taken.
// Its one row, when it took the claim, is the state it replaced (NULL: a
// new email); no row when it took nothing.
const claimCall = `SELECT r_from FROM orderpipe_claim_email($1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $7::bytea, $8::text)`

// Claim implements notification.ClaimStore in one round trip when the email
// is new, a refused send's retry or a takeover: one call of claimCall,
// which returns the state it replaced. Only when it takes nothing does a
// second statement say why.
func (c *EmailClaims) Claim(ctx context.Context, req notification.ClaimRequest) (notification.Claim, error) {
	ev := req.Event
	fp := events.FingerprintOf(ctx, ev)
	var claim notification.Claim
	err := c.db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		var from *string
		err := conn.QueryRow(ctx, claimCall,
			string(ev.EventID), ev.Order.OrderID, req.Kind, req.Recipient, req.MessageID, req.TTL.Milliseconds(), fp[:], req.Token,
		).Scan(&from)
		var pgErr *pgconn.PgError
		switch {
		case err == nil && (from == nil || *from == "failed"):
			claim = notification.Claimed
			return nil
		case err == nil:
			claim = notification.TakenOver
			return nil
		case errors.As(err, &pgErr) && pgErr.Code == "23505" && pgErr.ConstraintName == oneCancellationEmail:
			claim, err = superseded(ctx, conn, ev, fp[:])
			return err
		case !errors.Is(err, pgx.ErrNoRows):
			return fmt.Errorf("claim email of %s: %w", ev.EventID, err)
		}
		claim, err = whyNot(ctx, conn, ev, fp[:], req.Token)
		return err
	})
	return claim, err
}

// whyNot reads a claim the upsert could not take: sent, a conflicting
// payload, this delivery's own (committed while its acknowledgement was
// lost), or another delivery's live claim.
func whyNot(ctx context.Context, conn *pgxpool.Conn, ev events.Event, fp []byte, token string) (notification.Claim, error) {
	var (
		status, holder string
		known          []byte
		remainingMS    int64
	)
	err := conn.QueryRow(ctx, `
		SELECT status, fingerprint, coalesce(claim_token, ''), coalesce((extract(epoch FROM lease_until - now()) * 1000)::bigint, 0)
		FROM notifications WHERE event_id = $1::uuid`, string(ev.EventID)).Scan(&status, &known, &holder, &remainingMS)
	switch {
	case err != nil:
		return 0, fmt.Errorf("read email claim of %s: %w", ev.EventID, err)
	case known != nil && !bytes.Equal(known, fp):
		return 0, fmt.Errorf("email of %s: %w", ev.EventID, events.ErrConflict)
	case status == "sent":
		return notification.AlreadySent, nil
	case status == "sending" && holder == token:
		return notification.Claimed, nil
	}
	return 0, &notification.ClaimedError{Remaining: time.Duration(max(remainingMS, 0)) * time.Millisecond}
}

// superseded records a cancellation whose order already has its one
// cancellation email (out of stock, and by the customer): handled, nothing
// sent.
func superseded(ctx context.Context, conn *pgxpool.Conn, ev events.Event, fp []byte) (notification.Claim, error) {
	if _, err := conn.Exec(ctx, `
		INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint, trace_id)
		VALUES ($1, $2::uuid, $3, $4, $5, $6) ON CONFLICT DO NOTHING`,
		notification.Name, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp, traceID(ctx)); err != nil {
		return 0, fmt.Errorf("record superseded cancellation %s: %w", ev.EventID, err)
	}
	return notification.AlreadySent, nil
}

// recordCall is orderpipe_record_email's (store/migrations/00011): the
// ledger's six arguments (ledgerArgs). It marks the email sent and writes
// the ledger row in one statement.
const recordCall = `SELECT orderpipe_record_email($1::text, $2::text, $3::text, $4::text, $5::bytea, $6::text)`

// Record implements notification.ClaimStore: the status and the ledger row
// in one statement (recordCall), so one round trip (and its own atomic
// transaction) is all that stands between acceptance and record.
func (c *EmailClaims) Record(ctx context.Context, ev events.Event) error {
	if err := c.db.exec(ctx, recordCall, ledgerArgs(ctx, notification.Name, ev)...); err != nil {
		return fmt.Errorf("record email of %s sent: %w", ev.EventID, err)
	}
	return nil
}

// Abandon implements notification.ClaimStore.
func (c *EmailClaims) Abandon(ctx context.Context, ev events.Event) error {
	err := c.db.exec(ctx, `
			UPDATE notifications SET status = 'failed', lease_until = NULL
			WHERE event_id = $1::uuid AND status = 'sending'`, string(ev.EventID))
	if err != nil {
		return fmt.Errorf("abandon email claim of %s: %w", ev.EventID, err)
	}
	return nil
}

// MarkUnknown implements notification.ClaimStore. The lease is kept.
func (c *EmailClaims) MarkUnknown(ctx context.Context, ev events.Event, token string) error {
	err := c.db.exec(ctx, `
			UPDATE notifications SET status = 'unknown'
			WHERE event_id = $1::uuid AND status = 'sending' AND claim_token = $2`, string(ev.EventID), token)
	if err != nil {
		return fmt.Errorf("mark email of %s outcome unknown: %w", ev.EventID, err)
	}
	return nil
}
