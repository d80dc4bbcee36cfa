package store_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/admin"
)

// TestOutboxIsPerTopic: two pipelines share one database; each relay takes
// only the events emitted for its own topic, oldest first, and adapters
// given no topic refuse to emit or relay instead of writing rows no relay
// would ever publish.
func TestOutboxIsPerTopic(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	type pipeline struct {
		inventory *store.Inventory
		outbox    *store.Outbox
	}
	open := func(topic string) pipeline {
		return pipeline{store.NewInventory(env.DB, topic), store.NewOutbox(env.DB, topic)}
	}
	a, b := open(prefix+"orders-a"), open(prefix+"orders-b")
	soldOut := soldOutProduct(t, env, prefix)
	emit := func(p pipeline, order string) events.EventID {
		ev := placedOrder(prefix+order, soldOut)
		comp := inventory.OutOfStock(ev)
		if _, err := p.inventory.Reserve(ctx, ev, inventory.Lines(ev.Order), comp); err != nil {
			t.Fatalf("reserve %s (out of stock, so compensated): %v", order, err)
		}
		return comp.EventID
	}
	wantA := []events.EventID{emit(a, "a1"), emit(a, "a2")}
	wantB := []events.EventID{emit(b, "b1")}
	wantA = append(wantA, emit(a, "a3"))

	relay := func(p pipeline) []events.EventID {
		var got []events.EventID
		for {
			msgs, err := p.outbox.Lease(ctx, 2, time.Minute)
			if err != nil {
				t.Fatalf("relay: %v", err)
			}
			if len(msgs) == 0 {
				return got
			}
			ids := make([]int64, len(msgs))
			for i, m := range msgs {
				got = append(got, events.EventID(m.EventID))
				ids[i] = m.ID
			}
			if err := p.outbox.MarkSent(ctx, ids); err != nil {
				t.Fatal(err)
			}
		}
	}
	if pending, err := admin.OutboxPending(ctx, env.DB, prefix); err != nil || pending != 3+1 {
		t.Fatalf("pending before relaying = %d, %v; want 4", pending, err)
	}
	if got := relay(a); !slices.Equal(got, wantA) {
		t.Errorf("relay of topic a published %v, want %v", got, wantA)
	}
	if pending, err := admin.OutboxPending(ctx, env.DB, prefix); err != nil || pending != 1 {
		t.Errorf("pending after relaying a = %d, %v; want 1 (b's)", pending, err)
	}
	if got := relay(b); !slices.Equal(got, wantB) {
		t.Errorf("relay of topic b published %v, want %v", got, wantB)
	}
	if got := relay(a); len(got) != 0 {
		t.Errorf("second relay of a published %v again", got)
	}

	none := open("")
	ev := placedOrder(prefix+"x", soldOut)
	if _, err := none.inventory.Reserve(ctx, ev, inventory.Lines(ev.Order), inventory.OutOfStock(ev)); !errors.Is(err, store.ErrNoOutboxTopic) {
		t.Errorf("reserve without a topic: %v, want ErrNoOutboxTopic", err)
	}
	if _, err := none.outbox.Lease(ctx, 10, time.Minute); !errors.Is(err, store.ErrNoOutboxTopic) {
		t.Errorf("relay without a topic: %v, want ErrNoOutboxTopic", err)
	}
}

// TestOutboxLeases: a relay's leased rows are not given to another relay
// while it publishes; rows given back, or whose lease ran out (a relay that
// died mid-publish), are taken again.
func TestOutboxLeases(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	inv, outbox := store.NewInventory(env.DB, prefix+"orders"), store.NewOutbox(env.DB, prefix+"orders")
	soldOut := soldOutProduct(t, env, prefix)
	for i := range 3 {
		ev := placedOrder(fmt.Sprintf("%slease%d", prefix, i), soldOut)
		if _, err := inv.Reserve(ctx, ev, inventory.Lines(ev.Order), inventory.OutOfStock(ev)); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(msgs []store.OutboxMessage) []int64 {
		out := make([]int64, len(msgs))
		for i, m := range msgs {
			out[i] = m.ID
		}
		return out
	}
	first, err := outbox.Lease(ctx, 2, time.Minute)
	if err != nil || len(first) != 2 {
		t.Fatalf("first lease = %d rows, %v; want 2", len(first), err)
	}
	second, err := outbox.Lease(ctx, 10, 300*time.Millisecond)
	if err != nil || len(second) != 1 || slices.Contains(ids(first), second[0].ID) {
		t.Fatalf("second lease = %v, %v; want the one row the first does not hold", ids(second), err)
	}
	if err := outbox.Release(ctx, ids(first)); err != nil {
		t.Fatal(err)
	}
	taken := map[int64]bool{}
	testenv.Eventually(t, 5*time.Second, func() error {
		again, err := outbox.Lease(ctx, 10, time.Minute)
		if err != nil {
			return err
		}
		for _, id := range ids(again) {
			taken[id] = true
		}
		if len(taken) != 3 {
			return fmt.Errorf("after a release and a lease run out, leased %d rows, want 3", len(taken))
		}
		return nil
	})
}

// soldOutProduct adds a product with no stock: every order of it is
// rejected, and its compensation goes to the outbox.
func soldOutProduct(t *testing.T, env *testenv.Env, prefix string) events.SKU {
	t.Helper()
	sku := events.SKU(prefix + "SOLD-OUT")
	if _, err := env.DB.Pool().Exec(context.Background(),
		`INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, 'Sold out', 100, 0)`, string(sku)); err != nil {
		t.Fatal(err)
	}
	return sku
}

// placedOrder is an order.placed of one unit of sku.
func placedOrder(orderID string, sku events.SKU) events.Event {
	return events.Event{EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced, SchemaVersion: 1,
		OccurredAt: time.Now().UTC().Truncate(time.Microsecond), Order: events.Order{OrderID: orderID,
			Customer: events.Customer{ID: "c", Email: "c@example.com", Name: "C"}, Currency: "USD",
			Items: []events.Item{{SKU: sku, Quantity: 1}}}}
}
