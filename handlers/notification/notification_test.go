package notification_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/mailer"
)

// These tests pin down the order of the handler's steps with a fake store
// that writes down every call; the real store's claims are tested against
// PostgreSQL in store/ and the whole handler in internal/app.

var errDown = errors.New("database: circuit breaker open")

type fakeStore struct {
	calls       []string
	reserveErr  error
	abandonErrs []error // returned by successive AbandonNotification calls
	claim       notification.Claim
}

func (s *fakeStore) ReserveRecorder(context.Context) (notification.Recorder, error) {
	s.calls = append(s.calls, "reserve")
	if s.reserveErr != nil {
		return nil, s.reserveErr
	}
	return &fakeRecorder{s: s}, nil
}

func (s *fakeStore) AbandonNotification(context.Context, events.Event) error {
	s.calls = append(s.calls, "abandon")
	if len(s.abandonErrs) == 0 {
		return nil
	}
	err := s.abandonErrs[0]
	s.abandonErrs = s.abandonErrs[1:]
	return err
}

func (s *fakeStore) CompleteNotification(context.Context, events.Event) error {
	s.calls = append(s.calls, "complete")
	return nil
}

type fakeRecorder struct{ s *fakeStore }

func (r *fakeRecorder) ClaimNotification(context.Context, events.Event, string, string, string, string) (notification.Claim, error) {
	r.s.calls = append(r.s.calls, "claim")
	return r.s.claim, nil
}

func (r *fakeRecorder) CompleteNotification(context.Context, events.Event) error {
	r.s.calls = append(r.s.calls, "record")
	return nil
}

func (r *fakeRecorder) Release() {}

type fakeCatalog struct{}

func (fakeCatalog) Products(_ context.Context, skus []events.SKU) (map[events.SKU]catalog.Product, error) {
	out := make(map[events.SKU]catalog.Product, len(skus))
	for _, sku := range skus {
		out[sku] = catalog.Product{SKU: sku, Name: "Classic mug", Price: 1299}
	}
	return out, nil
}

// fakeSender accepts (and calls accepted) unless refuse is set.
type fakeSender struct {
	refuse error
	sent   int
}

func (f *fakeSender) Send(_ context.Context, _ mailer.Message, accepted func() error) error {
	if f.refuse != nil {
		return f.refuse
	}
	f.sent++
	return accepted()
}

func placed() events.Event {
	return events.Event{
		EventID: "6f1c2c1e-0d7e-4c1a-9d1e-2b7a4f3c9a10", EventType: events.OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC),
		Order: events.Order{
			OrderID: "ord-1", Currency: "USD",
			Customer: events.Customer{ID: "cus-1", Email: "ada@example.com", Name: "Ada"},
			Items:    []events.Item{{SKU: "MUG-CLASSIC", Quantity: 2}},
		},
	}
}

func TestNotificationSteps(t *testing.T) {
	refused := errors.New("smtp: 550 mailbox unavailable")
	tests := []struct {
		name      string
		store     fakeStore
		sender    fakeSender
		wantErr   error // nil: success
		wantCalls []string
		wantSent  int
	}{
		{
			name:      "sent and recorded on the held connection",
			wantCalls: []string{"reserve", "claim", "record"},
			wantSent:  1,
		},
		{
			// The drill's promotion found this: the claim was taken, then the
			// connection for the record could not be had, and the give-back
			// failed too, so the retry waited out the whole claim (2 min).
			// Reserving first leaves nothing to give back.
			name:      "no connection: nothing claimed, nothing sent",
			store:     fakeStore{reserveErr: errDown},
			wantErr:   errDown,
			wantCalls: []string{"reserve"},
		},
		{
			name:      "already sent: nothing sent again",
			store:     fakeStore{claim: notification.AlreadySent},
			wantCalls: []string{"reserve", "claim"},
		},
		{
			name:      "refused by the server: the claim is given back",
			sender:    fakeSender{refuse: refused},
			wantErr:   refused,
			wantCalls: []string{"reserve", "claim", "abandon"},
		},
		{
			name:      "refused during a database blip: the give-back is retried until it lands",
			store:     fakeStore{abandonErrs: []error{errDown, errDown}},
			sender:    fakeSender{refuse: refused},
			wantErr:   refused,
			wantCalls: []string{"reserve", "claim", "abandon", "abandon", "abandon"},
		},
		{
			name:      "outcome unknown: the claim is kept, so no copy sends before it runs out",
			sender:    fakeSender{refuse: mailer.ErrOutcomeUnknown},
			wantErr:   mailer.ErrOutcomeUnknown,
			wantCalls: []string{"reserve", "claim"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := notification.New(&tt.store, fakeCatalog{}, &tt.sender, notification.Config{}, nil)
			err := h.Handle(context.Background(), placed())
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("Handle: %v", err)
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Fatalf("Handle = %v, want an error wrapping %v", err, tt.wantErr)
			}
			if !slices.Equal(tt.store.calls, tt.wantCalls) {
				t.Errorf("store calls %s, want %s", strings.Join(tt.store.calls, ", "), strings.Join(tt.wantCalls, ", "))
			}
			if tt.sender.sent != tt.wantSent {
				t.Errorf("sent %d, want %d", tt.sender.sent, tt.wantSent)
			}
		})
	}
}
