// Package notification emails the customer about their order: a
// confirmation when it is placed, and a message when it is cancelled or
// shipped. Every email goes out under the email claim (Courier, claim.go),
// which keeps it to one per event except in the two counted windows it
// documents.
package notification

import (
	"context"
	"fmt"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/mailer"
)

// Name is the handler's name in the processed-events ledger and in logs.
const Name = "notification"

// Catalog returns product names; a SKU it does not know is missing from the map.
type Catalog interface {
	Products(ctx context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error)
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
	catalog Catalog
	courier *Courier
	cfg     Config
}

// New returns a notification handler that delivers through courier.
func New(cat Catalog, courier *Courier, cfg Config) *Handler {
	if cfg.From == "" {
		cfg.From = FromDefault
	}
	if cfg.MessageIDDomain == "" {
		cfg.MessageIDDomain = "orderpipe.local"
	}
	return &Handler{catalog: cat, courier: courier, cfg: cfg}
}

// Handle implements handlers.EventFunc.
func (h *Handler) Handle(ctx context.Context, ev events.Event) error {
	if err := h.handle(ctx, ev); err != nil {
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
			return events.UnknownSKU(sku)
		}
		names[sku] = p.Name
	}
	msg, err := h.compose(ev, names)
	if err != nil {
		return err
	}
	return h.courier.Deliver(ctx, ev, msg)
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
