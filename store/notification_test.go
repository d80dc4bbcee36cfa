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

// TestOneCancellationEmailPerOrder: an order cancelled twice (out of stock,
// and by the customer) gets one cancellation email. The second
// cancellation's claim hits notifications_one_cancellation inside
// orderpipe_claim_email; it is recorded handled, nothing to send, however
// often it is delivered, and both cancellations end in the ledger.
func TestOneCancellationEmailPerOrder(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	claims := store.NewEmailClaims(env.DB)
	first := cancelOf(placedOrder("cancel-"+uuid.NewString()[:8], "X"))
	second := cancelOf(first)
	claim := func(ev events.Event) (notification.Claim, error) {
		return claims.Claim(ctx, notification.ClaimRequest{Event: ev, Kind: string(ev.EventType), Recipient: "c@example.com",
			MessageID: "mid-" + string(ev.EventID), Token: "delivery-1", TTL: time.Minute})
	}
	if c, err := claim(first); err != nil || c != notification.Claimed {
		t.Fatalf("first cancellation: claim = %v, %v; want Claimed", c, err)
	}
	for _, step := range []string{"second cancellation", "its redelivery"} {
		if c, err := claim(second); err != nil || c != notification.AlreadySent {
			t.Fatalf("%s: claim = %v, %v; want AlreadySent", step, c, err)
		}
	}
	if err := claims.Record(ctx, first); err != nil {
		t.Fatal(err)
	}
	var emails, ledger int64
	if err := env.DB.Pool().QueryRow(ctx, `SELECT
		(SELECT count(*) FROM notifications WHERE order_id = $1),
		(SELECT count(*) FROM processed_events WHERE handler = $2 AND order_id = $1)`,
		first.Order.OrderID, notification.Name).Scan(&emails, &ledger); err != nil {
		t.Fatal(err)
	}
	if emails != 1 || ledger != 2 {
		t.Fatalf("%d emails and %d ledger rows, want 1 and 2", emails, ledger)
	}
}

// TestEmailClaimTakesOverALapsedLease: a 'sending' claim whose lease ran
// out (its delivery died mid-send) is taken over by another delivery,
// counted as an attempt; the record then ends it once.
func TestEmailClaimTakesOverALapsedLease(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	claims := store.NewEmailClaims(env.DB)
	ev := placedOrder("lapsed-"+uuid.NewString()[:8], "X")
	claim := func(token string, ttl time.Duration) (notification.Claim, error) {
		return claims.Claim(ctx, notification.ClaimRequest{Event: ev, Kind: string(ev.EventType), Recipient: "c@example.com",
			MessageID: "mid", Token: token, TTL: ttl})
	}
	if c, err := claim("delivery-1", time.Millisecond); err != nil || c != notification.Claimed {
		t.Fatalf("first claim = %v, %v", c, err)
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
	var (
		attempts int
		from     string
	)
	if err := env.DB.Pool().QueryRow(ctx, `SELECT attempts, claimed_from FROM notifications WHERE event_id = $1::uuid`,
		string(ev.EventID)).Scan(&attempts, &from); err != nil {
		t.Fatal(err)
	}
	if attempts != 2 || from != "sending" {
		t.Fatalf("attempts %d, claimed_from %q; want 2, \"sending\"", attempts, from)
	}
	for range 2 {
		if err := claims.Record(ctx, ev); err != nil {
			t.Fatal(err)
		}
	}
	if c, err := claim("delivery-3", time.Minute); err != nil || c != notification.AlreadySent {
		t.Fatalf("after the record: claim = %v, %v; want AlreadySent", c, err)
	}
}
