package store_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// TestNotificationClaims walks an email's claim through its states: the
// first claim, the same delivery claiming again after a lost commit
// acknowledgement, a concurrent delivery kept out, a refused send released
// for the retry, a conflicting payload, and the record that ends it.
func TestNotificationClaims(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	ev := events.Event{EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Now().UTC(), Order: events.Order{OrderID: "claim-" + uuid.NewString()[:8],
			Customer: events.Customer{ID: "c", Email: "c@example.com", Name: "C"}, Currency: "USD",
			Items: []events.Item{{SKU: "X", Quantity: 1}}}}
	claims := store.NewEmailClaims(env.DB)
	claim := func(e events.Event, token string) (notification.Claim, error) {
		return claims.Claim(ctx, notification.ClaimRequest{Event: e, Kind: "order.placed", Recipient: "c@example.com",
			MessageID: "mid", Token: token, TTL: time.Minute})
	}
	expect := func(step string, got notification.Claim, err error, want notification.Claim, wantErr func(error) bool) {
		t.Helper()
		if wantErr != nil {
			if !wantErr(err) {
				t.Fatalf("%s: err = %v", step, err)
			}
			return
		}
		if err != nil || got != want {
			t.Fatalf("%s: claim = %v, %v; want %v", step, got, err, want)
		}
	}
	isClaimed := func(err error) bool {
		var ce *notification.ClaimedError
		return errors.As(err, &ce) && ce.Remaining > 30*time.Second
	}

	c, err := claim(ev, "delivery-1")
	expect("first claim", c, err, notification.Claimed, nil)
	c, err = claim(ev, "delivery-1")
	expect("same delivery again (lost acknowledgement)", c, err, notification.Claimed, nil)
	c, err = claim(ev, "delivery-2")
	expect("concurrent delivery", c, err, 0, isClaimed)
	if err := claims.Abandon(ctx, ev); err != nil {
		t.Fatal(err)
	}
	c, err = claim(ev, "delivery-2")
	expect("retry after a refused send", c, err, notification.Claimed, nil)
	other := ev
	other.Order.Items = []events.Item{{SKU: "X", Quantity: 2}}
	c, err = claim(other, "delivery-3")
	expect("conflicting payload", c, err, 0, func(err error) bool { return errors.Is(err, events.ErrConflict) })
	if err := claims.Record(ctx, ev); err != nil {
		t.Fatal(err)
	}
	c, err = claim(ev, "delivery-4")
	expect("after the record", c, err, notification.AlreadySent, nil)
}

// TestEmailOutcomeUnknown: once a send's outcome is unknown, the delivery
// that made the claim can no longer claim it as its own (it would send a
// second copy, uncounted); only after the lease runs out does another
// delivery take it over, as a takeover the courier counts.
func TestEmailOutcomeUnknown(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	ev := events.Event{EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Now().UTC(), Order: events.Order{OrderID: "unknown-" + uuid.NewString()[:8],
			Customer: events.Customer{ID: "c", Email: "c@example.com", Name: "C"}, Currency: "USD",
			Items: []events.Item{{SKU: "X", Quantity: 1}}}}
	claims := store.NewEmailClaims(env.DB)
	claim := func(token string, ttl time.Duration) (notification.Claim, error) {
		return claims.Claim(ctx, notification.ClaimRequest{Event: ev, Kind: "order.placed", Recipient: "c@example.com",
			MessageID: "mid", Token: token, TTL: ttl})
	}
	if c, err := claim("delivery-1", 1500*time.Millisecond); err != nil || c != notification.Claimed {
		t.Fatalf("first claim = %v, %v", c, err)
	}
	if err := claims.MarkUnknown(ctx, ev, "delivery-1"); err != nil {
		t.Fatal(err)
	}
	var claimed *notification.ClaimedError
	if c, err := claim("delivery-1", time.Minute); !errors.As(err, &claimed) {
		t.Fatalf("the same delivery claimed an email of unknown outcome again: %v, %v", c, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		c, err := claim("delivery-2", time.Minute)
		if err != nil {
			return err
		}
		if c != notification.TakenOver {
			t.Fatalf("after the lease ran out: claim = %v, want TakenOver", c)
		}
		return nil
	})
}
