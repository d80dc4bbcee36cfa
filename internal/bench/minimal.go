package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/inventory"
)

// minimal replays the three effects with only their essential statements —
// billing's ledger row and invoice, inventory's ledger row and stock
// update, notification's ledger row — each one pipelined transaction,
// through the same proxy, with the ceiling's concurrency and pool, no
// SMTP, no catalog reads, no locks or checks: what the database must do
// per order at the least. The pipeline's maximum over this is how close
// the pipeline's database work comes to the essential.
func (b *Bench) minimal(ctx context.Context, d time.Duration) (RunResult, error) {
	res := RunResult{Name: "minimal replay: the effects' essential statements"}
	if err := b.s.Reset(ctx); err != nil {
		return res, err
	}
	pc, err := pgxpool.ParseConfig(b.net.DBURL)
	if err != nil {
		return res, fmt.Errorf("bench: minimal replay: %w", err)
	}
	pc.MaxConns = b.cfg.DBMaxConns
	// As the store runs behind PgBouncer: no prepared statements.
	pc.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeExec
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return res, fmt.Errorf("bench: minimal replay: %w", err)
	}
	defer pool.Close()
	fns := minimalEffects(pool)
	conns := SampleConns(ctx, b.s.Admin, b.s.Cfg.DBName, 100*time.Millisecond)
	cost := b.startCost(ctx, 0, nil)
	start := time.Now()
	orders, errs, backlog := b.driveDirect(ctx, fns, d)
	res.DBConns = conns.Stop()
	res.Elapsed = time.Since(start).Seconds()
	var done []time.Time
	var cs []Completion
	for _, o := range orders {
		if o.left.Load() == 0 {
			done = append(done, o.done)
			cs = append(cs, Completion{Published: o.published, Done: o.done})
		}
	}
	res.CPU, res.Cost = cost.stop(ctx, func() int { return len(cs) })
	res.Published, res.Completed, res.Errors = len(orders), len(cs), errs
	res.Backlog = backlog
	res.Throughput, res.Overall = SteadyRate(done), OverallRate(cs)
	return res, ctx.Err()
}

// minimalEffects are the three effects' essential statements on pool, in
// driveDirect's order (billing, inventory, notification).
func minimalEffects(pool *pgxpool.Pool) []handlers.EventFunc {
	// Invoice numbers from far above the counter: the replay leaves the
	// counter row alone, as it leaves every check out.
	var number atomic.Int64
	number.Store(1 << 40)
	return []handlers.EventFunc{
		func(ctx context.Context, ev events.Event) error {
			b := &pgx.Batch{}
			queueLedger(b, "billing", ev)
			b.Queue(`INSERT INTO invoices (invoice_number, order_id, event_id, customer_id, currency,
				subtotal_cents, discount_cents, total_cents, status) VALUES ($1, $2, $3::uuid, $4, $5, $6, 0, $6, 'issued')`,
				number.Add(1), ev.Order.OrderID, string(ev.EventID), ev.Order.Customer.ID, ev.Order.Currency, int64(100*len(ev.Order.Items)))
			return pool.SendBatch(ctx, b).Close()
		},
		func(ctx context.Context, ev events.Event) error {
			lines := inventory.Lines(ev.Order)
			skus, qtys := make([]string, len(lines)), make([]int32, len(lines))
			for i, l := range lines {
				skus[i], qtys[i] = string(l.SKU), int32(l.Quantity) //nolint:gosec // G115: the generator's quantities are small
			}
			// The rows locked in SKU order first, as the real effect does:
			// an UPDATE ... FROM unnest locks them in its join's order, and
			// two orders of the same products then deadlock.
			b := &pgx.Batch{}
			queueLedger(b, "inventory", ev)
			b.Queue(`SELECT 1 FROM products WHERE sku = ANY($1::text[]) ORDER BY sku FOR UPDATE`, skus)
			b.Queue(`UPDATE products p SET stock = p.stock - w.qty FROM unnest($1::text[], $2::int[]) AS w(sku, qty)
				WHERE p.sku = w.sku AND p.stock >= w.qty`, skus, qtys)
			return pool.SendBatch(ctx, b).Close()
		},
		func(ctx context.Context, ev events.Event) error {
			b := &pgx.Batch{}
			queueLedger(b, "notification", ev)
			return pool.SendBatch(ctx, b).Close()
		},
	}
}

// queueLedger queues handler's ledger row for ev.
func queueLedger(b *pgx.Batch, handler string, ev events.Event) {
	fp := events.Fingerprint(ev)
	b.Queue(`INSERT INTO processed_events (handler, event_id, event_type, order_id, fingerprint)
		VALUES ($1, $2::uuid, $3, $4, $5)`, handler, string(ev.EventID), string(ev.EventType), ev.Order.OrderID, fp[:])
}
