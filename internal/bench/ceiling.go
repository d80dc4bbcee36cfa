package bench

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/store"
)

var quiet = slog.New(slog.DiscardHandler)

// ceilingAttempts bounds the attempts per handler call in the ceiling run
// (a deadlock or serialization failure is retried, as the worker would).
const ceilingAttempts = 5

// ceilingOrder is one order in the ceiling run.
type ceilingOrder struct {
	ev        events.Event
	published time.Time
	left      atomic.Int64 // handlers still to commit
	done      time.Time    // set by the last one
}

// ceiling drives the three handlers' transactions straight against the
// database, with the worker's concurrency (MaxInFlight goroutines per
// handler, a pool of DBMaxConns through the same proxy) and no queues and
// no Redis: catalog reads go to the database, emails to the SMTP server as
// in the worker. It is the most the database (and the mail server) allow
// on this machine with these transactions.
func (b *Bench) ceiling(ctx context.Context, d time.Duration) (RunResult, error) {
	res := RunResult{Name: "ceiling: handlers direct on the database"}
	if err := b.s.Reset(ctx); err != nil {
		return res, err
	}
	db, err := store.Open(ctx, store.Config{URL: b.net.DBURL, MaxConns: b.cfg.DBMaxConns, Logger: quiet})
	if err != nil {
		return res, err
	}
	defer db.Close()
	// The handlers' SMTP commands counted as the worker counts them.
	m := metrics.New()
	mail, err := mailer.New(mailer.Config{Addr: b.net.SMTPAddr, CommandFunc: app.CountSMTPCommands(m, nil)})
	if err != nil {
		return res, err
	}
	defer mail.Close()
	// The handlers as the worker wires them; catalog reads go to the
	// database (no Redis in the ceiling).
	byName, err := app.EventFuncs(app.Deps{DB: db, Catalog: store.NewCatalog(db), OutboxTopic: b.s.Top.Topic, Sender: mail, Logger: quiet})
	if err != nil {
		return res, err
	}
	fns := make([]handlers.EventFunc, len(ceilingHandlers))
	for i, name := range ceilingHandlers {
		fns[i] = byName[name]
	}
	conns := SampleConns(ctx, b.s.Admin, b.s.Cfg.DBName, 100*time.Millisecond)
	cost := b.startCost(ctx, 0, gatherMetrics(m.Registry))
	start := time.Now()
	orders, errs, backlog := b.driveDirect(ctx, fns, d)
	res.DBConns = conns.Stop()
	res.Elapsed = time.Since(start).Seconds()
	var cs []Completion
	for _, o := range orders {
		if o.left.Load() == 0 {
			cs = append(cs, Completion{Published: o.published, Done: o.done})
		}
	}
	done := make([]time.Time, len(cs))
	for i, c := range cs {
		done[i] = c.Done
	}
	res.CPU, res.Cost = cost.stop(ctx, func() int { return len(cs) })
	res.Published, res.Completed, res.Errors = len(orders), len(cs), errs
	res.Backlog = backlog
	res.Throughput, res.Overall = SteadyRate(done), OverallRate(cs)
	return res, ctx.Err()
}

// driveDirect feeds generated orders to every handler's goroutines for d
// (the feed blocks while a handler is Backlog orders behind, as the
// saturated pipeline's queues do), then lets them finish.
func (b *Bench) driveDirect(ctx context.Context, fns []handlers.EventFunc, d time.Duration) ([]*ceilingOrder, int, map[string]float64) {
	chans := make([]chan *ceilingOrder, len(fns))
	var (
		wg   sync.WaitGroup
		errs atomic.Int64
	)
	for i, fn := range fns {
		chans[i] = make(chan *ceilingOrder, b.cfg.Backlog)
		for range b.cfg.MaxInFlight {
			wg.Go(func() {
				for o := range chans[i] {
					if err := callDirect(ctx, fn, o.ev); err != nil {
						errs.Add(1)
						continue
					}
					if o.left.Add(-1) == 0 {
						o.done = time.Now()
					}
				}
			})
		}
	}
	var (
		depthMu sync.Mutex
		depths  = make([]float64, len(fns))
		samples int
	)
	stopSampling := every(ctx, 100*time.Millisecond, func(context.Context) {
		depthMu.Lock()
		defer depthMu.Unlock()
		for i, ch := range chans {
			depths[i] += float64(len(ch))
		}
		samples++
	})
	prog := NewProgress(b.cfg.Log, "ceiling", "orders", 0, 10*time.Second)
	var orders []*ceilingOrder
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		o := &ceilingOrder{ev: b.gen.Order(time.Now()), published: time.Now()}
		o.left.Store(int64(len(fns)))
		orders = append(orders, o)
		for _, ch := range chans {
			ch <- o
		}
		prog.Add(1)
	}
	prog.Finish()
	stopSampling()
	for _, ch := range chans {
		close(ch)
	}
	wg.Wait()
	backlog := map[string]float64{}
	for i, name := range ceilingHandlers {
		if samples > 0 {
			backlog[name] = depths[i] / float64(samples)
		}
	}
	return orders, int(errs.Load()), backlog
}

// ceilingHandlers name the ceiling's handlers, in driveDirect's order.
var ceilingHandlers = []string{billing.Name, inventory.Name, notification.Name}

func callDirect(ctx context.Context, fn handlers.EventFunc, ev events.Event) error {
	var err error
	for range ceilingAttempts {
		if err = fn(ctx, ev); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}
