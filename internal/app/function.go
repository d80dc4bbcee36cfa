package app

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/tracing"
	"github.com/orderpipe/orderpipe/worker"
)

// A Function is one handler run the way an AWS Lambda function runs it:
// built once per execution environment (its pool, Redis client, SMTP
// client, breakers and IAM token or secret cache live as long as the
// environment), then handed one batch per invocation. Each batch goes
// through the handler exactly as the worker wires it (Handlers: decode,
// idempotency, in-process retry, the handler) and is settled as the worker
// settles (worker.Batch: dead letters with the same attributes, retries
// through the visibility timeout); the event source deletes what is done.
//
// Inventory's function also relays the outbox: after each batch it
// publishes the compensations it wrote, within the invocation's time
// (relayFunction), and a scheduled invocation (Relay) picks up what a
// failed or cut-short relay left.
type Function struct {
	cfg   FunctionConfig
	d     *deps
	batch *worker.Batch
	relay *functionRelay // inventory's only
	stop  func()         // EMF
	log   *slog.Logger
}

// FunctionConfig is a function's configuration.
type FunctionConfig struct {
	// App is the worker's configuration: AWS, Topology, Store (its
	// MaxConns: 1 or 2 per environment), Redis, SMTP, the idempotency and
	// email claim settings, Retry, Logger, Metrics, EMF, TracerProvider;
	// the Consumer template's HandlerTimeout and Redelivery. Handlers,
	// MetricsAddr and NoRelay are not used.
	App Config
	// Handler is the one handler this function runs: billing,
	// notification or inventory.
	Handler string
	// Batch bounds an invocation: MaxInFlight (the records handled at
	// once), StartMargin, SettleMargin, GateWait. The rest comes from App
	// and the handler's queue.
	Batch worker.BatchConfig
}

// NewFunction builds the function: it resolves the handler's queue and DLQ
// (and, for inventory, the topic), and opens the connections lazily.
func NewFunction(ctx context.Context, cfg FunctionConfig) (*Function, error) {
	app := cfg.App
	if app.Logger == nil {
		app.Logger = slog.Default()
	}
	app.Metrics = metrics.Or(app.Metrics)
	app.AWS = countedAWS(app.AWS, app.Metrics)
	if app.TracerProvider != nil {
		app.Logger = tracing.Logger(app.Logger)
	}
	app.Handlers, app.MetricsAddr = []string{cfg.Handler}, ""
	cfg.App = app
	cfg.Batch.StartMargin = cmp.Or(cfg.Batch.StartMargin, worker.StartMarginDefault)
	cfg.Batch.SettleMargin = cmp.Or(cfg.Batch.SettleMargin, worker.SettleMarginDefault)
	sqsc := sqs.NewFromConfig(app.AWS)
	q, err := topology.ResolveQueue(ctx, sqsc, app.Topology, cfg.Handler)
	if err != nil {
		return nil, fmt.Errorf("find the queue of %s: %w", cfg.Handler, err)
	}
	d, err := open(ctx, app)
	if err != nil {
		return nil, err
	}
	f := &Function{cfg: cfg, d: d, log: app.Logger.With("handler", cfg.Handler)}
	if err := f.build(ctx, sqsc, q); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func (f *Function) build(ctx context.Context, sqsc *sqs.Client, q topology.AppliedQueue) error {
	app := f.cfg.App
	hs, err := f.d.handlers(app)
	if err != nil {
		return err
	}
	h, ok := hs[f.cfg.Handler]
	if !ok {
		return fmt.Errorf("unknown handler %q (want billing, inventory or notification)", f.cfg.Handler)
	}
	if app.Middleware != nil {
		h = app.Middleware(q)(h)
	}
	tmpl := app.Consumer
	tmpl.TracerProvider = app.TracerProvider
	tmpl.MaxInFlight = f.cfg.Batch.MaxInFlight
	bc := f.cfg.Batch
	bc.Config = consumerConfig(tmpl, q, f.d.gates()[f.cfg.Handler], app.Metrics, app.Logger)
	if f.batch, err = worker.NewBatch(sqsc, h, bc); err != nil {
		return err
	}
	if f.cfg.Handler == inventory.Name {
		if f.relay, err = newFunctionRelay(ctx, app, f.d.db); err != nil {
			return err
		}
	}
	f.stop, err = exportMetrics(ctx, app, f.d)
	return err
}

// Close closes what the environment holds: at its shutdown, or in tests.
func (f *Function) Close() {
	if f.stop != nil {
		f.stop()
	}
	if f.relay != nil {
		f.relay.sns.Close()
	}
	f.d.close()
}

// Handle runs one batch and returns the messages that failed (the event
// source leaves them; it deletes the rest). Inventory's function then
// relays the outbox with the time left.
func (f *Function) Handle(ctx context.Context, msgs []*worker.Message) []*worker.Message {
	failed := f.batch.Process(ctx, msgs)
	if f.relay != nil {
		f.relay.drain(ctx, f.cfg.Batch, f.log)
	}
	return failed
}

// Relay publishes the outbox's unsent compensations within ctx's deadline
// (a scheduled invocation of inventory's function) and returns how many it
// published. Other handlers' functions have no outbox: 0.
func (f *Function) Relay(ctx context.Context) int {
	if f.relay == nil {
		return 0
	}
	return f.relay.drain(ctx, f.cfg.Batch, f.log)
}

// Logger is the function's logger.
func (f *Function) Logger() *slog.Logger { return f.log }

// functionRelay is the worker's outbox relay step (relayOnce) run in the
// time an invocation has left.
type functionRelay struct {
	outbox *store.Outbox
	pub    *events.Publisher
	sns    *resilience.Breaker
	m      *metrics.Metrics
}

func newFunctionRelay(ctx context.Context, cfg Config, db *store.DB) (*functionRelay, error) {
	snsc := sns.NewFromConfig(cfg.AWS)
	arn, err := topology.ResolveTopic(ctx, snsc, cfg.Topology)
	if err != nil {
		return nil, fmt.Errorf("find the topic the outbox relays to: %w", err)
	}
	pub, err := events.NewPublisher(snsc, events.PublisherConfig{TopicARN: arn, TracerProvider: cfg.TracerProvider})
	if err != nil {
		return nil, err
	}
	return &functionRelay{
		outbox: store.NewOutbox(db, cfg.Topology.Topic), pub: pub, m: cfg.Metrics,
		sns: newSNSBreaker(ctx, cfg.Logger, cfg.Metrics),
	}, nil
}

// relayStepLeast is the least time a relay step is started with: a lease and
// a publish of ten rows.
const relayStepLeast = time.Second

// drain runs relay steps until the outbox has nothing more, a step fails,
// or the invocation's time runs short: a step's lease and publish end
// SettleMargin + bookkeepingTimeout before the deadline, so that its
// bookkeeping (bounded by bookkeepingTimeout) ends before the settle
// margin. Rows it could not publish wait for the next invocation; a row
// leased by a step cut short comes back after relayLease.
func (r *functionRelay) drain(ctx context.Context, bc worker.BatchConfig, log *slog.Logger) int {
	sctx := ctx
	if deadline, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		sctx, cancel = context.WithDeadline(ctx, deadline.Add(-bc.SettleMargin-bookkeepingTimeout))
		defer cancel()
	}
	total := 0
	for {
		if deadline, ok := sctx.Deadline(); ok && time.Until(deadline) < relayStepLeast {
			return total
		}
		n, err := relayOnce(sctx, r.outbox, r.pub, r.sns, r.m)
		total += n
		if err != nil {
			if sctx.Err() == nil {
				log.Warn("outbox relay failed; unsent events wait for the next invocation", "err", err)
			}
			return total
		}
		if n < relayBatch {
			return total
		}
	}
}
