// Package notification emails the customer about their order: a
// confirmation when it is placed, and a message when it is cancelled or
// shipped.
//
// Email is the one effect outside the database, so it cannot commit with the
// ledger marker. The handler claims the event in the database, sends, then
// records the send with the marker. A redelivery after the record sends
// nothing; only a crash between the SMTP server accepting the message and the
// record (one round trip) can repeat an email, and the repeat carries the same
// Message-ID, so mail systems that deduplicate on it drop it.
package notification

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/worker"
)

// Name is the handler's name in the processed-events ledger and in logs.
const Name = "notification"

// ErrUnknownSKU is returned by ProductNames for a SKU not in the catalog.
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

// Store is what notification needs from the database.
type Store interface {
	// ClaimNotification records that ev's email is being sent and reports
	// whether it was already sent (then nothing must be sent).
	ClaimNotification(ctx context.Context, ev events.Event, kind, recipient, messageID string) (alreadySent bool, err error)
	// AbandonNotification gives up a claim after a failed send, so the retry
	// need not wait out the lease.
	AbandonNotification(ctx context.Context, ev events.Event) error
	// CompleteNotification records the email as sent, with the ledger marker.
	CompleteNotification(ctx context.Context, ev events.Event) error
	// ProductNames returns catalog names; it wraps ErrUnknownSKU.
	ProductNames(ctx context.Context, skus []events.SKU) (map[events.SKU]string, error)
}

// Sender delivers one email.
type Sender interface {
	Send(ctx context.Context, m mailer.Message) error
}

// Config configures the handler.
type Config struct {
	// From is the sender address. Defaults to FromDefault.
	From string
	// MessageIDDomain is the right-hand side of Message-IDs. Defaults to "orderpipe.local".
	MessageIDDomain string
}

// FromDefault is the default sender.
const FromDefault = "Orderpipe Shop <orders@orderpipe.local>"

// Handler is the notification handler.
type Handler struct {
	store  Store
	sender Sender
	cfg    Config
}

// New returns a notification handler.
func New(store Store, sender Sender, cfg Config) *Handler {
	if cfg.From == "" {
		cfg.From = FromDefault
	}
	if cfg.MessageIDDomain == "" {
		cfg.MessageIDDomain = "orderpipe.local"
	}
	return &Handler{store: store, sender: sender, cfg: cfg}
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
	names, err := h.store.ProductNames(ctx, skus)
	if err != nil {
		return err
	}
	msg, err := h.compose(ev, names)
	if err != nil {
		return err
	}
	sent, err := h.store.ClaimNotification(ctx, ev, string(ev.EventType), msg.To, msg.MessageID)
	var claimed *ClaimedError
	if errors.As(err, &claimed) {
		return worker.RetryAfter(min(claimed.Remaining+time.Second, maxClaimWait), err)
	}
	if err != nil || sent {
		return err
	}
	if err := h.sender.Send(ctx, msg); err != nil {
		if aerr := h.store.AbandonNotification(ctx, ev); aerr != nil {
			err = errors.Join(err, aerr)
		}
		return err
	}
	return h.store.CompleteNotification(ctx, ev)
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
