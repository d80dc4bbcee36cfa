// Package notification emails the customer about their order: a
// confirmation when it is placed, and a message when it is cancelled or
// shipped.
//
// Email is the one effect outside the database, so it cannot commit with the
// ledger marker. The handler claims the event in the database (a lease that
// keeps concurrent copies from sending), sends, and records the send with
// the marker in one statement the moment the SMTP server has accepted the
// message, before the SMTP session is even closed. A redelivery after the
// record sends nothing.
//
// The one window for a duplicate email is between the server's acceptance
// and the record: one database round trip. The record is retried for
// Config.RecordFor, so a database failover of a few seconds does not open it; if
// the worker dies in it, or the database stays unreachable for longer, the
// claim runs out (EMAIL_CLAIM_TTL) and a later copy sends again.
// Both are counted in orderpipe_email_duplicate_risk_total (cause
// "unrecorded" when the record failed, "takeover" when an expired claim is
// sent again), and the repeat carries the same Message-ID, so mail systems
// that deduplicate on it drop it. A send the server refused is marked
// failed and retried without risk.
package notification

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/worker"
)

// Name is the handler's name in the processed-events ledger and in logs.
const Name = "notification"

// ErrUnknownSKU is wrapped when an event names a SKU not in the catalog.
var ErrUnknownSKU = errors.New("unknown SKU")

// ClaimedError is returned by ClaimNotification while another worker holds
// the claim on the same email, for Remaining more.
type ClaimedError struct{ Remaining time.Duration }

func (e *ClaimedError) Error() string {
	return fmt.Sprintf("email claimed by another worker for %s more", e.Remaining.Round(time.Millisecond))
}

// maxClaimWait is the longest a duplicate waits before looking again: the
// holder usually finishes within milliseconds, and if it died the lease runs
// out and a later look takes over.
const maxClaimWait = 5 * time.Second

// Claim is the result of ClaimNotification.
type Claim int

// Claims.
const (
	Claimed     Claim = iota // first claim, or a retry of a send the server refused
	TakenOver                // a claim that ran out without a record: the email may be out already
	AlreadySent              // recorded as sent: send nothing
)

// Store is what notification needs from the database.
type Store interface {
	// AbandonNotification marks a claim failed when its email was not sent
	// (the server refused it), so the retry need not wait out the claim.
	AbandonNotification(ctx context.Context, ev events.Event) error
	// CompleteNotification records the email as sent, with the ledger marker.
	CompleteNotification(ctx context.Context, ev events.Event) error
	// ReserveRecorder sets aside a database connection for one email's claim
	// and record. Taken before the claim, so a claim is never left behind
	// by a pool that could not give the record its connection; and the
	// moment between the SMTP server's acceptance and the record is one
	// round trip, never a wait for a busy pool.
	ReserveRecorder(ctx context.Context) (Recorder, error)
}

// Recorder claims and records one email on a connection held for it.
type Recorder interface {
	// ClaimNotification claims ev's email for this worker. It returns a
	// *ClaimedError while another worker's claim is live, and an error
	// wrapping events.ErrConflict if ev's event_id is known with another
	// payload.
	// token identifies this delivery: a claim made with the same token (a
	// commit whose acknowledgement a failover swallowed) is this delivery's
	// own and is returned as Claimed.
	ClaimNotification(ctx context.Context, ev events.Event, kind, recipient, messageID, token string) (Claim, error)
	CompleteNotification(ctx context.Context, ev events.Event) error
	// Release gives the connection back; safe to call more than once.
	Release()
}

// Catalog returns product names; a SKU it does not know is missing from the map.
type Catalog interface {
	Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error)
}

// Sender delivers one email and calls accepted once the server took it
// (mailer.SMTP). An error wrapping mailer.ErrOutcomeUnknown means the
// email may be out.
type Sender interface {
	Send(ctx context.Context, m mailer.Message, accepted func() error) error
}

// Config configures the handler.
type Config struct {
	// From is the sender address. Defaults to FromDefault.
	From string
	// MessageIDDomain is the right-hand side of Message-IDs. Defaults to "orderpipe.local".
	MessageIDDomain string
	// RecordFor bounds the retries of recording an accepted email.
	// Defaults to RecordForDefault.
	RecordFor time.Duration
}

// FromDefault is the default sender.
const FromDefault = "Orderpipe Shop <orders@orderpipe.local>"

// Handler is the notification handler.
type Handler struct {
	store   Store
	catalog Catalog
	sender  Sender
	cfg     Config
	log     *slog.Logger
}

// New returns a notification handler.
func New(store Store, cat Catalog, sender Sender, cfg Config, log *slog.Logger) *Handler {
	if cfg.From == "" {
		cfg.From = FromDefault
	}
	if cfg.MessageIDDomain == "" {
		cfg.MessageIDDomain = "orderpipe.local"
	}
	if cfg.RecordFor <= 0 {
		cfg.RecordFor = RecordForDefault
	}
	if log == nil {
		log = slog.Default()
	}
	return &Handler{store: store, catalog: cat, sender: sender, cfg: cfg, log: log}
}

// Handle implements handlers.EventFunc.
func (h *Handler) Handle(ctx context.Context, ev events.Event) error {
	if err := h.handle(ctx, ev); err != nil {
		if errors.Is(err, ErrUnknownSKU) {
			return worker.Permanent(string(events.ReasonUnknownSKU), err)
		}
		return fmt.Errorf("notify %s for order %s: %w", ev.EventType, ev.Order.OrderID, err)
	}
	return nil
}

func (h *Handler) handle(ctx context.Context, ev events.Event) error {
	skus := make([]events.SKU, 0, len(ev.Order.Items))
	for _, it := range ev.Order.Items {
		skus = append(skus, it.SKU)
	}
	products, err := h.catalog.Products(ctx, skus)
	if err != nil {
		return err
	}
	names := make(map[events.SKU]string, len(skus))
	for _, sku := range skus {
		p, ok := products[sku]
		if !ok {
			return fmt.Errorf("%w %q", ErrUnknownSKU, sku)
		}
		names[sku] = p.Name
	}
	msg, err := h.compose(ev, names)
	if err != nil {
		return err
	}
	// The connection comes first: failing to get it leaves nothing behind.
	rec, err := h.store.ReserveRecorder(ctx)
	if err != nil {
		return err
	}
	defer rec.Release()
	claim, err := rec.ClaimNotification(ctx, ev, string(ev.EventType), msg.To, msg.MessageID, claimToken(ctx))
	var claimed *ClaimedError
	if errors.As(err, &claimed) {
		return worker.RetryAfter(worker.WaitForHolder(ctx, claimed.Remaining+time.Second, maxClaimWait), err)
	}
	if err != nil || claim == AlreadySent {
		return err
	}
	if claim == TakenOver {
		metrics.EmailDuplicateRisk.WithLabelValues("takeover").Inc()
		h.log.Warn("sending an email whose earlier claim ran out unrecorded; it may arrive twice (same Message-ID)",
			"event_id", ev.EventID, "message_id", msg.MessageID)
	}
	err = h.sender.Send(ctx, msg, func() error {
		metrics.EmailsSent.WithLabelValues(string(ev.EventType)).Inc()
		return h.record(ctx, rec, ev)
	})
	// Released before anything below asks the pool for a connection: a
	// handler must never hold one while waiting for another.
	rec.Release()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errUnrecorded):
		metrics.EmailDuplicateRisk.WithLabelValues("unrecorded").Inc()
		return err
	case errors.Is(err, mailer.ErrOutcomeUnknown):
		// The email may be out: keep the claim, so no copy sends before it
		// runs out; a later copy takes over then.
		return err
	}
	// Not sent: give the claim back.
	if aerr := h.abandon(ctx, ev); aerr != nil {
		err = errors.Join(err, aerr)
	}
	return err
}

// claimToken identifies the delivery being handled: a digest of its SQS
// receipt handle, unique per receive. Outside the worker (direct calls), a
// random token per call.
func claimToken(ctx context.Context) string {
	if m, ok := worker.FromContext(ctx); ok && m.ReceiptHandle() != "" {
		sum := sha256.Sum256([]byte(m.ReceiptHandle()))
		return hex.EncodeToString(sum[:16])
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

var errUnrecorded = errors.New("email accepted by the SMTP server but not recorded")

// RecordForDefault is how long the handler keeps trying to record an email
// the SMTP server accepted, through a database failover if need be. With
// the SMTP timeout it must stay under the claim's lease
// (store.EmailClaimTTLDefault).
const RecordForDefault = 90 * time.Second

// AbandonForDefault bounds the retries of giving back the claim of an
// email that was not sent. Past it (a database down for longer) the claim
// runs out on its own after EMAIL_CLAIM_TTL and the retry waits for that.
const AbandonForDefault = 10 * time.Second

// record records an accepted email, retrying with backoff for up to
// Config.RecordFor, even if ctx is cancelled meanwhile (the email is out either
// way): only a database down for longer opens the duplicate window.
func (h *Handler) record(ctx context.Context, rec Recorder, ev events.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.cfg.RecordFor)
	defer cancel()
	if rec.CompleteNotification(ctx, ev) == nil {
		return nil
	}
	// The held connection failed (a failover, say): give it back and retry
	// through the pool.
	rec.Release()
	if err := retry(ctx, func() error { return h.store.CompleteNotification(ctx, ev) }); err != nil {
		return fmt.Errorf("%w: %w", errUnrecorded, err)
	}
	return nil
}

// abandon gives back the claim of an email that was not sent, retrying
// through a database blip for up to AbandonForDefault, so the message's
// retry finds the claim free instead of waiting out EMAIL_CLAIM_TTL.
func (h *Handler) abandon(ctx context.Context, ev events.Event) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), AbandonForDefault)
	defer cancel()
	return retry(ctx, func() error { return h.store.AbandonNotification(ctx, ev) })
}

// retry runs fn until it succeeds or ctx ends, backing off from 100 ms to
// 2 s; it returns fn's last error.
func retry(ctx context.Context, fn func() error) error {
	wait := 100 * time.Millisecond
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if !sleep(ctx, wait) {
			return err
		}
		wait = min(2*wait, 2*time.Second)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func (h *Handler) compose(ev events.Event, names map[events.SKU]string) (mailer.Message, error) {
	content, err := render(ev, names)
	if err != nil {
		return mailer.Message{}, err
	}
	return mailer.Message{
		From:      h.cfg.From,
		To:        ev.Order.Customer.Email,
		Subject:   content.subject,
		MessageID: fmt.Sprintf("%s.%s@%s", ev.EventID, Name, h.cfg.MessageIDDomain),
		Text:      content.text,
		HTML:      content.html,
	}, nil
}
