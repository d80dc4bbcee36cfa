package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// The effect statements are decided in SQL, one round trip each: these
// tests hold each branch of them to what billing.Store and inventory.Store
// promise, against PostgreSQL through PgBouncer.

// TestReserveAllOrNothing: an order is reserved whole, or rejected with
// every short line named and nothing taken, its compensation in the outbox;
// a copy changes nothing, and the same event_id with another payload is a
// conflict.
func TestReserveAllOrNothing(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	inv := store.NewInventory(env.DB, prefix+"orders")
	a, b := product(t, env, prefix+"A", 5), product(t, env, prefix+"B", 1)

	ok := orderOf(prefix+"ok", map[events.SKU]int{a: 2, b: 1})
	reserve := func(ev events.Event) inventory.Status {
		t.Helper()
		st, err := inv.Reserve(ctx, ev, inventory.Lines(ev.Order), inventory.OutOfStock(ev))
		if err != nil {
			t.Fatalf("reserve %s: %v", ev.Order.OrderID, err)
		}
		return st
	}
	if st := reserve(ok); st != inventory.StatusReserved {
		t.Fatalf("order within stock: status %q, want reserved", st)
	}
	if st := reserve(ok); st != "" {
		t.Fatalf("copy of a reserved order: status %q, want \"\" (nothing changed)", st)
	}
	wantStock(t, env, a, 3)
	wantStock(t, env, b, 0)

	short := orderOf(prefix+"short", map[events.SKU]int{a: 2, b: 1})
	if st := reserve(short); st != inventory.StatusRejected {
		t.Fatalf("order past stock: status %q, want rejected", st)
	}
	wantStock(t, env, a, 3) // nothing taken from the line that would fit
	var reason string
	var outboxed int
	if err := env.DB.Pool().QueryRow(ctx, `SELECT reason, (SELECT count(*) FROM outbox WHERE order_id = $1)
		FROM reservations WHERE order_id = $1`, short.Order.OrderID).Scan(&reason, &outboxed); err != nil {
		t.Fatal(err)
	}
	if want := "insufficient_stock: " + string(b) + " (want 1, have 0)"; reason != want || outboxed != 1 {
		t.Fatalf("rejection: reason %q and %d outbox rows, want %q and 1", reason, outboxed, want)
	}

	changed := ok
	changed.Order.Items = []events.Item{{SKU: a, Quantity: 1}}
	if _, err := inv.Reserve(ctx, changed, inventory.Lines(changed.Order), inventory.OutOfStock(changed)); !errors.Is(err, events.ErrConflict) {
		t.Fatalf("known event_id with another payload: %v, want events.ErrConflict", err)
	}
	wantStock(t, env, a, 3)
}

// TestReleaseGivesBackWhatWasTaken: a cancellation puts back exactly what
// the order took, once; a cancellation seen before its order means the
// order takes nothing.
func TestReleaseGivesBackWhatWasTaken(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	inv := store.NewInventory(env.DB, prefix+"orders")
	a := product(t, env, prefix+"A", 5)

	placed := orderOf(prefix+"o1", map[events.SKU]int{a: 2})
	if _, err := inv.Reserve(ctx, placed, inventory.Lines(placed.Order), inventory.OutOfStock(placed)); err != nil {
		t.Fatal(err)
	}
	cancelled := cancelOf(placed)
	for range 2 { // the second is a copy
		if err := inv.Release(ctx, cancelled); err != nil {
			t.Fatalf("release: %v", err)
		}
	}
	wantStock(t, env, a, 5)
	wantReservation(t, env, placed.Order.OrderID, inventory.StatusReleased)

	early := orderOf(prefix+"o2", map[events.SKU]int{a: 1})
	if err := inv.Release(ctx, cancelOf(early)); err != nil {
		t.Fatalf("cancellation before its order: %v", err)
	}
	if st, err := inv.Reserve(ctx, early, inventory.Lines(early.Order), inventory.OutOfStock(early)); err != nil || st != "" {
		t.Fatalf("order after its cancellation: status %q, %v; want \"\" (nothing taken)", st, err)
	}
	wantStock(t, env, a, 5)
	wantReservation(t, env, early.Order.OrderID, inventory.StatusCancelled)
}

// TestInvoiceCouponLimitAndCancellation: invoice numbers come in order, a
// coupon past its limit leaves the invoice at full price with the reason, a
// cancellation voids the invoice and gives the redemption back, and an order
// cancelled first is never invoiced.
func TestInvoiceCouponLimitAndCancellation(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	bill := store.NewBilling(env.DB)
	code := prefix + "ONCE"
	if _, err := env.DB.Pool().Exec(ctx, `INSERT INTO coupons (code, kind, amount_off_cents, max_redemptions)
		VALUES ($1, 'fixed', 300, 1)`, code); err != nil {
		t.Fatal(err)
	}
	invoice := func(ev events.Event) billing.Issued {
		t.Helper()
		q := billing.Quote{Subtotal: 1000, Discount: 300, Total: 700, CouponCode: code,
			Lines: []billing.Line{{SKU: "X", Name: "X", UnitPrice: 500, Quantity: 2, Total: 1000}}}
		issued, err := bill.Invoice(ctx, ev, billing.Invoice{Quote: q, OrderID: ev.Order.OrderID,
			EventID: ev.EventID, CustomerID: "c", Currency: "USD"})
		if err != nil {
			t.Fatalf("invoice %s: %v", ev.Order.OrderID, err)
		}
		return issued
	}
	first, second := orderOf(prefix+"b1", nil), orderOf(prefix+"b2", nil)
	one, two := invoice(first), invoice(second)
	if !one.New || one.Discount != 300 || !two.New || two.Discount != 0 || two.Number != one.Number+1 {
		t.Fatalf("two orders on a one-use coupon: %+v then %+v; want 300 off, then full price, numbers in a row", one, two)
	}
	if again := invoice(first); again.New || again.Number != 0 {
		t.Fatalf("copy of an invoiced order: %+v, want nothing issued", again)
	}
	var note string
	if err := env.DB.Pool().QueryRow(ctx, `SELECT coalesce(coupon_note, '') FROM invoices WHERE order_id = $1`,
		second.Order.OrderID).Scan(&note); err != nil {
		t.Fatal(err)
	}
	if note != billing.ErrCouponLimitReached.Error() {
		t.Fatalf("full-price invoice's note %q, want %q", note, billing.ErrCouponLimitReached)
	}

	voided, err := bill.Cancel(ctx, cancelOf(first), "customer")
	if err != nil || !voided {
		t.Fatalf("cancel an invoiced order: voided %v, %v", voided, err)
	}
	if third := invoice(orderOf(prefix+"b3", nil)); third.Discount != 300 {
		t.Fatalf("after a cancellation gave the coupon back, the next order got %s off, want 300", third.Discount)
	}

	early := orderOf(prefix+"b4", nil)
	if voided, err := bill.Cancel(ctx, cancelOf(early), "customer"); err != nil || voided {
		t.Fatalf("cancel before the order: voided %v, %v; want nothing voided", voided, err)
	}
	if late := invoice(early); !late.New || late.Number != 0 {
		t.Fatalf("order after its cancellation: %+v, want recorded and never invoiced", late)
	}
}

func product(t *testing.T, env *testenv.Env, sku string, stock int) events.SKU {
	t.Helper()
	if _, err := env.DB.Pool().Exec(context.Background(),
		`INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $1, 100, $2)`, sku, stock); err != nil {
		t.Fatal(err)
	}
	return events.SKU(sku)
}

func orderOf(orderID string, qty map[events.SKU]int) events.Event {
	ev := placedOrder(orderID, "X")
	ev.Order.Items = nil
	for sku, n := range qty {
		ev.Order.Items = append(ev.Order.Items, events.Item{SKU: sku, Quantity: n})
	}
	return ev
}

func cancelOf(placed events.Event) events.Event {
	ev := placed
	ev.EventID, ev.EventType, ev.Reason = events.EventID(uuid.NewString()), events.OrderCancelled, "customer"
	return ev
}

func wantStock(t *testing.T, env *testenv.Env, sku events.SKU, want int) {
	t.Helper()
	var got int
	if err := env.DB.Pool().QueryRow(context.Background(), `SELECT stock FROM products WHERE sku = $1`, string(sku)).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("stock of %s: %d, want %d", sku, got, want)
	}
}

func wantReservation(t *testing.T, env *testenv.Env, orderID string, want inventory.Status) {
	t.Helper()
	var got string
	if err := env.DB.Pool().QueryRow(context.Background(), `SELECT status FROM reservations WHERE order_id = $1`, orderID).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if inventory.Status(got) != want {
		t.Fatalf("reservation of %s: %q, want %q", orderID, got, want)
	}
}

// TestReservesRacingReleasesNeverFail: a hundred placements race ten
// cancellations of reserved orders for a sold-out product. Every call
// succeeds (a placement that meets the stock a cancellation gave back is
// reserved or rejected, never an error), no more is taken than was given
// back, and the stock is what the movements say. Before the product rows
// were locked in a statement of their own, placements that waited for a
// cancellation's commit decided on its stock and updated from the version
// their snapshot held, and failed on CHECK (stock >= 0): dead letters.
func TestReservesRacingReleasesNeverFail(t *testing.T) {
	env := testenv.Open(t, "store")
	ctx := context.Background()
	prefix := testenv.Prefix()
	inv := store.NewInventory(env.DB, prefix+"orders")
	const initial = 10
	hot := product(t, env, prefix+"HOT", initial)
	reserve := func(ev events.Event) (inventory.Status, error) {
		return inv.Reserve(ctx, ev, inventory.Lines(ev.Order), inventory.OutOfStock(ev))
	}
	var sold []events.Event
	for i := range initial {
		ev := orderOf(fmt.Sprintf("%sfirst%d", prefix, i), map[events.SKU]int{hot: 1})
		if _, err := reserve(ev); err != nil {
			t.Fatal(err)
		}
		sold = append(sold, ev)
	}
	var (
		wg       sync.WaitGroup
		reserved atomic.Int64
		errs     = make(chan error, 200)
	)
	for i := range 100 {
		ev := orderOf(fmt.Sprintf("%srace%d", prefix, i), map[events.SKU]int{hot: 1})
		wg.Go(func() {
			st, err := reserve(ev)
			if err != nil {
				errs <- err
			}
			if st == inventory.StatusReserved {
				reserved.Add(1)
			}
		})
		if i%10 == 0 {
			c := cancelOf(sold[i/10])
			wg.Go(func() {
				if err := inv.Release(ctx, c); err != nil {
					errs <- err
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var stock, moved int
	if err := env.DB.Pool().QueryRow(ctx, `SELECT p.stock, (SELECT coalesce(sum(delta), 0) FROM stock_movements WHERE sku = p.sku)
		FROM products p WHERE sku = $1`, string(hot)).Scan(&stock, &moved); err != nil {
		t.Fatal(err)
	}
	if n := int(reserved.Load()); n > initial || stock != initial-n || stock != initial+moved {
		t.Errorf("%d racing placements reserved, stock %d, movements %d; want at most %d given back, stock %d = %d + movements",
			n, stock, moved, initial, initial-n, initial)
	}
}
