// Package app wires the worker: AWS clients, the pool, Redis, SMTP, the three
// handlers and one consumer per queue. cmd/worker and the integration tests
// both run it.
package app

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	smithymiddleware "github.com/aws/smithy-go/middleware"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/sync/errgroup"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/metrics/emf"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/tracing"
	"github.com/orderpipe/orderpipe/worker"
)

// Config is everything the worker needs; cmd/worker fills it from the environment.
type Config struct {
	AWS      aws.Config
	Topology topology.Topology
	Handlers []string // which handlers this process runs; defaults to all
	Store    store.Config
	Redis    redisstore.Config
	// IdemLease and IdemRetention are the idempotency keys' TTLs (in
	// progress, completed); ProductCacheTTL the product entries'. Zero takes
	// the store's defaults. ProductMemoTTL is how long a product stays in
	// the worker's memory; zero keeps none.
	IdemLease       time.Duration
	IdemRetention   time.Duration
	ProductCacheTTL time.Duration
	ProductMemoTTL  time.Duration
	SMTP            mailer.Config
	Notification    notification.Config
	// EmailClaimTTL is the lease of an email claim; zero takes
	// notification.ClaimTTLDefault. It must outlast SMTP.Timeout by the
	// record window and a margin (notification.ClaimRules.Validate).
	EmailClaimTTL time.Duration
	// Consumer is the template for every queue's consumer: Name, QueueURL,
	// DLQURL and VisibilityTimeout are filled per queue.
	Consumer worker.Config
	// Retry bounds the in-process retry of a blip; zero takes the defaults
	// (3 tries within 2s).
	Retry resilience.RetryBudget
	// Middleware, if set, returns a middleware to wrap each queue's handler
	// in, outermost (instrumentation; the tests inject faults with it).
	Middleware func(q topology.AppliedQueue) worker.Middleware
	Logger     *slog.Logger
	// NoRelay turns the outbox relay off in this process (the tests that
	// interrupt it).
	NoRelay bool
	// Maintenance is the retention of the ledger, the settled email claims
	// and the sent outbox rows (maintenance.go); on unless Off.
	Maintenance MaintenanceConfig
	// MetricsAddr, if set, is where /metrics (Prometheus), /healthz and
	// /readyz are served.
	MetricsAddr string
	// Metrics is where the worker counts; nil makes a set of its own.
	// Tests pass one to read it.
	Metrics *metrics.Metrics
	// EMF, if set, also writes the metrics the stack's alarms and dashboard
	// read as CloudWatch embedded metric format lines (metrics/emf), to
	// stdout unless it names an Output. Its Handlers default to Handlers,
	// its Logger to Logger.
	EMF *emf.Config
	// TracerProvider, if set, traces every message from its publisher's
	// trace context through the runtime, each handler, its database, Redis
	// and SMTP work, and the outbox relay's publishes; the log lines about
	// a message then carry trace_id and span_id. Nil (the default): nothing
	// is traced. cmd/worker builds it from the OTEL_* variables
	// (tracing.Start); the tests pass one with an in-memory exporter.
	TracerProvider trace.TracerProvider
}

// AWSConfig loads the default AWS configuration for region: the SDK reads
// its own environment (AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SQS/_SNS
// included), shared files and the default credential chain (the ECS task
// role). Nothing points at an emulator unless that environment does, as
// `scripts/stack.sh env` does; optFns pass straight through (the tests'
// defaults in internal/testenv). It makes no network call: credentials are
// retrieved on first use.
func AWSConfig(ctx context.Context, region string, optFns ...func(*awsconfig.LoadOptions) error) (aws.Config, error) {
	opts := append([]func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(region)}, optFns...)
	cfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	}
	return cfg, nil
}

// countAWSRequestsID names the counting middleware in an operation's stack.
const countAWSRequestsID = "orderpipe.CountAWSRequests"

// CountAWSRequests is an API option (aws.Config.APIOptions, or
// awsconfig.WithAPIOptions) that counts every AWS request a client sends on
// m.AWSRequests, by the SDK's service id and operation name: a fixed set,
// never a queue URL or anything from a request. It counts attempts, not
// calls: it is added at the end of the Finalize step, after the retry
// middleware (and after signing), so each attempt of a call passes it once,
// retries included, as AWS bills them; a call that never got to send (its
// credentials or signing failed) is not counted. A stack that already has
// it (a config counted twice) keeps the first.
func CountAWSRequests(m *metrics.Metrics) func(*smithymiddleware.Stack) error {
	count := smithymiddleware.FinalizeMiddlewareFunc(countAWSRequestsID, func(
		ctx context.Context, in smithymiddleware.FinalizeInput, next smithymiddleware.FinalizeHandler,
	) (smithymiddleware.FinalizeOutput, smithymiddleware.Metadata, error) {
		m.AWSRequests.WithLabelValues(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx)).Inc()
		return next.HandleFinalize(ctx, in)
	})
	return func(stack *smithymiddleware.Stack) error {
		if _, ok := stack.Finalize.Get(countAWSRequestsID); ok {
			return nil
		}
		return stack.Finalize.Add(count, smithymiddleware.After)
	}
}

// countedAWS is cfg with every request of the clients built from it
// counted on m.
func countedAWS(cfg aws.Config, m *metrics.Metrics) aws.Config {
	cfg.APIOptions = append(slices.Clip(cfg.APIOptions), CountAWSRequests(m))
	return cfg
}

// logger is Logger or slog.Default(), with the trace ids added to the lines
// logged with a traced context when tracing is on.
func (cfg Config) logger() *slog.Logger {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.TracerProvider != nil {
		log = tracing.Logger(log)
	}
	return log
}

// Run runs the worker until ctx is cancelled, then drains and returns.
func Run(ctx context.Context, cfg Config) error {
	cfg.Logger = cfg.logger()
	if len(cfg.Handlers) == 0 {
		cfg.Handlers = cfg.Topology.Handlers()
	}
	cfg.Metrics = metrics.Or(cfg.Metrics)
	log := cfg.Logger
	awsCfg := countedAWS(cfg.AWS, cfg.Metrics)
	sqsc, snsc := sqs.NewFromConfig(awsCfg), sns.NewFromConfig(awsCfg)
	ap, err := topology.Resolve(ctx, snsc, sqsc, cfg.Topology)
	if err != nil {
		return fmt.Errorf("find queues: %w", err)
	}
	d, err := open(ctx, cfg)
	if err != nil {
		return err
	}
	defer d.close()
	consumers, err := d.consumers(cfg, sqsc, ap)
	if err != nil {
		return err
	}
	g, gctx := errgroup.WithContext(ctx)
	if !cfg.NoRelay {
		pub, err := events.NewPublisher(snsc, events.PublisherConfig{TopicARN: ap.TopicARN, TracerProvider: cfg.TracerProvider})
		if err != nil {
			return err
		}
		snsBreaker := newSNSBreaker(ctx, log, cfg.Metrics)
		defer snsBreaker.Close()
		outbox := store.NewOutbox(d.db, cfg.Topology.Topic)
		g.Go(func() error { relay(gctx, outbox, pub, snsBreaker, cfg.Metrics, log); return nil })
	}
	if !cfg.Maintenance.Off {
		g.Go(func() error { maintain(gctx, d.db, cfg.Maintenance, cfg.Topology, cfg.Metrics, log); return nil })
	}
	stopExport, err := exportMetrics(ctx, cfg, d)
	if err != nil {
		return err
	}
	defer stopExport() // after the consumers' drain: the last EMF lines count it
	for _, c := range consumers {
		g.Go(func() error { return c.Run(gctx) })
	}
	log.Info("worker started", "handlers", cfg.Handlers, "topic", ap.TopicARN)
	err = g.Wait()
	log.Info("worker stopped")
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// exportMetrics serves /metrics, /healthz and /readyz at MetricsAddr and
// writes the EMF lines, as cfg asks; stop ends both.
func exportMetrics(ctx context.Context, cfg Config, d *deps) (stop func(), err error) {
	var stops []func()
	stop = func() {
		for _, s := range slices.Backward(stops) {
			s()
		}
	}
	if cfg.MetricsAddr != "" {
		registerPoolStats(cfg.Metrics, d.db)
		srv, err := serveHTTP(ctx, cfg.MetricsAddr, cfg.Metrics, readiness(d.db, d.redis, d.smtp), cfg.Logger)
		if err != nil {
			return nil, err
		}
		stops = append(stops, func() { srv.Close() })
	}
	if cfg.EMF != nil {
		ecfg := *cfg.EMF
		if ecfg.Handlers == nil {
			ecfg.Handlers = cfg.Handlers
		}
		if ecfg.Logger == nil {
			ecfg.Logger = cfg.Logger
		}
		e, err := emf.New(cfg.Metrics, ecfg)
		if err != nil {
			stop()
			return nil, err
		}
		stops = append(stops, e.Start(ctx))
	}
	return stop, nil
}

// deps are the worker's connections to its dependencies.
type deps struct {
	db    *store.DB
	redis *redisstore.Client
	mail  *mailer.SMTP
	smtp  *resilience.Breaker
}

// open connects to the database, Redis and SMTP (lazily: none of them needs
// to be up).
func open(ctx context.Context, cfg Config) (*deps, error) {
	scfg, rcfg, mcfg := cfg.Store, cfg.Redis, cfg.SMTP
	scfg.Logger, scfg.Metrics, scfg.TracerProvider = cfg.Logger, cfg.Metrics, cfg.TracerProvider
	rcfg.Logger, rcfg.Metrics, rcfg.TracerProvider = cfg.Logger, cfg.Metrics, cfg.TracerProvider
	mcfg.TracerProvider = cfg.TracerProvider
	mcfg.CommandFunc = CountSMTPCommands(cfg.Metrics, mcfg.CommandFunc)
	if mcfg.MaxIdle == 0 {
		// Keep a session for every email the consumer may send at once, so a
		// busy worker reuses them instead of dialling and quitting one per
		// burst.
		mcfg.MaxIdle = cmp.Or(cfg.Consumer.MaxInFlight, worker.MaxInFlightDefault)
	}
	db, err := store.Open(ctx, scfg)
	if err != nil {
		return nil, err
	}
	d := &deps{db: db}
	if d.redis, err = redisstore.Open(ctx, rcfg); err != nil {
		d.close()
		return nil, err
	}
	if d.mail, err = mailer.New(mcfg); err != nil {
		d.close()
		return nil, err
	}
	d.smtp = resilience.NewBreaker(ctx, resilience.BreakerConfig{
		Name: "smtp", Failures: 5, OpenFor: 2 * time.Second, Probe: d.mail.Ping, Logger: cfg.Logger, Metrics: cfg.Metrics,
	})
	return d, nil
}

// CountSMTPCommands is a mailer.Config.CommandFunc that counts each SMTP
// command on m, then calls next if set.
func CountSMTPCommands(m *metrics.Metrics, next func(string)) func(string) {
	return func(command string) {
		m.SMTPCommands.WithLabelValues(command).Inc()
		if next != nil {
			next(command)
		}
	}
}

func (d *deps) close() {
	if d.smtp != nil {
		d.smtp.Close()
	}
	if d.mail != nil {
		d.mail.Close()
	}
	if d.redis != nil {
		_ = d.redis.Close()
	}
	d.db.Close()
}

// consumers builds one consumer per handler cfg names, each gated by the
// breakers of the dependencies its handler needs: messages wait in the queue
// through an outage instead of burning receives on their way to the DLQ.
func (d *deps) consumers(cfg Config, sqsc *sqs.Client, ap topology.Applied) ([]*worker.Consumer, error) {
	hs, err := d.handlers(cfg)
	if err != nil {
		return nil, err
	}
	gates := d.gates()
	var cs []*worker.Consumer
	for _, name := range cfg.Handlers {
		h, ok := hs[name]
		if !ok {
			return nil, fmt.Errorf("unknown handler %q (want billing, inventory or notification)", name)
		}
		q, ok := ap.Queues[name]
		if !ok {
			return nil, fmt.Errorf("topology has no queue for handler %q", name)
		}
		if cfg.Middleware != nil {
			h = cfg.Middleware(q)(h)
		}
		tmpl := cfg.Consumer
		tmpl.TracerProvider = cfg.TracerProvider
		c, err := newConsumer(sqsc, tmpl, q, h, gates[name], cfg.Metrics, cfg.Logger)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// handlers are the three handlers on d, as Handlers wires them: the
// worker's consumers and a function (function.go) run these.
func (d *deps) handlers(cfg Config) (map[string]worker.Handler, error) {
	return Handlers(Deps{
		DB: d.db, Redis: d.redis, OutboxTopic: cfg.Topology.Topic, Sender: &breakerSender{b: d.smtp, next: d.mail},
		Claim: cfg.EmailClaim(), Notification: cfg.Notification,
		IdemLease: cfg.IdemLease, IdemRetention: cfg.IdemRetention, ProductCacheTTL: cfg.ProductCacheTTL,
		ProductMemoTTL: cfg.ProductMemoTTL,
		Retry:          cfg.Retry, Metrics: cfg.Metrics, Logger: cfg.Logger, TracerProvider: cfg.TracerProvider,
	})
}

// gates are each handler's gate: the breakers of the dependencies it needs.
func (d *deps) gates() map[string]worker.Gate {
	return map[string]worker.Gate{
		billing.Name:      d.db.Breaker(),
		inventory.Name:    d.db.Breaker(),
		notification.Name: resilience.All{d.db.Breaker(), d.smtp},
	}
}

func newConsumer(client *sqs.Client, tmpl worker.Config, q topology.AppliedQueue, h worker.Handler, gate worker.Gate, m *metrics.Metrics, log *slog.Logger) (*worker.Consumer, error) {
	return worker.New(client, h, consumerConfig(tmpl, q, gate, m, log))
}

// consumerConfig is tmpl completed for queue q: a consumer's, or a
// function's batch (function.go).
func consumerConfig(tmpl worker.Config, q topology.AppliedQueue, gate worker.Gate, m *metrics.Metrics, log *slog.Logger) worker.Config {
	c := tmpl
	c.Gate = gate
	c.Observer = m.Consumer(q.Handler)
	c.Name, c.QueueURL, c.DLQURL = q.Handler, q.URL, q.DLQURL
	c.VisibilityTimeout = time.Duration(q.VisibilityTimeoutSeconds) * time.Second
	// What a dead letter must keep to be understood and redriven.
	c.DeadLetterKeepAttributes = []string{events.AttrEventType, events.AttrSchemaVersion, events.AttrTraceParent, events.AttrTraceState}
	c.Logger = log
	return c
}

// serveHTTP serves /metrics (Prometheus), /healthz (the process is alive)
// and /readyz (its dependencies) at addr.
func serveHTTP(ctx context.Context, addr string, m *metrics.Metrics, ready func(context.Context) (map[string]string, bool), log *slog.Logger) (*http.Server, error) {
	var lc net.ListenConfig // ctx bounds the listen, not the listener
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listener on %s (METRICS_ADDR): %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks, ok := ready(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"ready": ok, "checks": checks})
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return srv, nil
}

// readiness checks the database (a ping, and its breaker), SMTP (its
// breaker) and Redis (a ping). Redis down is reported but does not make the
// worker unready: it runs on the database alone.
func readiness(db *store.DB, rdb *redisstore.Client, smtp *resilience.Breaker) func(context.Context) (map[string]string, bool) {
	return func(ctx context.Context) (map[string]string, bool) {
		checks, ok := map[string]string{}, true
		switch err := db.Ping(ctx); {
		case err != nil:
			checks["database"], ok = "down: "+err.Error(), false
		case !db.Breaker().Closed():
			checks["database"], ok = "breaker open", false
		default:
			checks["database"] = "ok"
		}
		if smtp.Closed() {
			checks["smtp"] = "ok"
		} else {
			checks["smtp"], ok = "breaker open", false
		}
		if err := rdb.Ping(ctx); err != nil {
			checks["redis"] = "down (degraded: database decides alone): " + err.Error()
		} else {
			checks["redis"] = "ok"
		}
		return checks, ok
	}
}

// registerPoolStats exports the pool's connection counts on m.
func registerPoolStats(m *metrics.Metrics, db *store.DB) {
	stat := func(f func(s *pgxpool.Stat) float64) func() float64 {
		return func() float64 { return f(db.Pool().Stat()) }
	}
	m.Registry.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderpipe_db_pool_acquired_connections", Help: "Pool connections in use."},
			stat(func(s *pgxpool.Stat) float64 { return float64(s.AcquiredConns()) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderpipe_db_pool_idle_connections", Help: "Pool connections idle."},
			stat(func(s *pgxpool.Stat) float64 { return float64(s.IdleConns()) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "orderpipe_db_pool_max_connections", Help: "The pool's size (DB_MAX_CONNS)."},
			stat(func(s *pgxpool.Stat) float64 { return float64(s.MaxConns()) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "orderpipe_db_pool_acquire_waits_total", Help: "Acquires that had to wait for a connection."},
			stat(func(s *pgxpool.Stat) float64 { return float64(s.EmptyAcquireCount()) })),
	)
}

// breakerSender sends through the SMTP breaker. The record the notification
// handler makes on acceptance is the database's business: its failure does
// not count against SMTP.
type breakerSender struct {
	b    *resilience.Breaker
	next *mailer.SMTP
}

func (s *breakerSender) Send(ctx context.Context, m mailer.Message, accepted func() error) error {
	var recordErr error
	err := s.b.Do(func() error {
		return s.next.Send(ctx, m, func() error { recordErr = accepted(); return nil })
	})
	if err != nil {
		return err
	}
	return recordErr
}

// EmailClaim is the email claim's timing: its lease, and the SMTP timeout
// it must outlast.
func (cfg Config) EmailClaim() notification.ClaimRules {
	return notification.ClaimRules{TTL: cfg.EmailClaimTTL, SendTimeout: cfg.SMTP.Timeout}
}
