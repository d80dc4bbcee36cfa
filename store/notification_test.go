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
	claim := func(e events.Event, token string) (notification.Claim, error) {
		rec, err := env.DB.ReserveRecorder(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer rec.Release()
		return rec.ClaimNotification(ctx, e, "order.placed", "c@example.com", "mid", token)
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
	if err := env.DB.AbandonNotification(ctx, ev); err != nil {
		t.Fatal(err)
	}
	c, err = claim(ev, "delivery-2")
	expect("retry after a refused send", c, err, notification.Claimed, nil)
	other := ev
	other.Order.Items = []events.Item{{SKU: "X", Quantity: 2}}
	c, err = claim(other, "delivery-3")
	expect("conflicting payload", c, err, 0, func(err error) bool { return errors.Is(err, events.ErrConflict) })
	if err := env.DB.CompleteNotification(ctx, ev); err != nil {
		t.Fatal(err)
	}
	c, err = claim(ev, "delivery-4")
	expect("after the record", c, err, notification.AlreadySent, nil)
}
