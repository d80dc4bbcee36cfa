// Package workerenv is the worker's configuration as the environment gives
// it: Load reads every variable, Check accepts or refuses the result. The
// worker (cmd/worker) runs them before it starts, and so does the benchmark's
// in-process worker (`orderbench bench worker`), so the two cannot drift.
package workerenv

import (
	"context"
	"log/slog"
	"strings"

	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/metrics/emf"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/tracing"
	"github.com/orderpipe/orderpipe/worker"
)

// Config is the worker's configuration as read by Load; Check accepts or
// refuses it, and nothing else decides whether the worker may start.
type Config struct {
	// Env holds every variable read, for `-h` (Usage) and the start-up log
	// (Effective), and the errors Check reports first.
	Env *env.Env
	// Common is the part shared with orderctl.
	Common env.Common
	// App is what app.Run takes; Check fills its AWS and Store, the caller
	// its Logger.
	App app.Config
	// Level is LOG_LEVEL's.
	Level slog.Level
	// Tracing is the OTEL_* variables' (off unless they turn it on); the
	// caller starts it (tracing.Start) and puts the provider in App.
	Tracing tracing.Config
}

// Load reads every variable through lookup. Errors are collected in the
// Env, for Check.
func Load(lookup env.LookupFunc) *Config {
	e := env.New(lookup)
	common := env.LoadCommon(e)
	cfg := app.Config{
		Topology:        common.Topology(),
		MetricsAddr:     e.String("METRICS_ADDR", ":9090", "listen address of the Prometheus /metrics endpoint; empty to turn it off"),
		Handlers:        e.List("WORKER_HANDLERS", "billing,notification,inventory", "handlers this process runs (comma-separated)"),
		Store:           common.Store,
		Redis:           common.Redis,
		IdemLease:       e.Duration("IDEMPOTENCY_LEASE", redisstore.LeaseDefault, "in-progress key TTL in Redis, renewed every third of it while a handler runs; a dead worker's copy is retried after at most this; at least 1s and 3 x REDIS_TIMEOUT"),
		IdemRetention:   e.Duration("IDEMPOTENCY_RETENTION", redisstore.RetentionDefault, "how long Redis remembers a completed event (later duplicates meet the database ledger)"),
		ProductCacheTTL: e.Duration("PRODUCT_CACHE_TTL", redisstore.ProductCacheTTLDefault, "TTL of product entries (name, price) in Redis"),
		ProductMemoTTL:  e.DurationOrOff("PRODUCT_CACHE_LOCAL_TTL", redisstore.ProductMemoTTLDefault, "how long the worker keeps a product (name, price) in its own memory; a price change reaches its orders within this; 0 for none"),
		SMTP: mailer.Config{
			Addr:     e.String("SMTP_ADDR", "127.0.0.1:1025", "SMTP server host:port (Mailpit locally, SES SMTP in AWS)"),
			Username: e.String("SMTP_USERNAME", "", "SMTP user; empty for no authentication"),
			Password: e.Secret("SMTP_PASSWORD", "SMTP password (never logged)"),
			Timeout:  e.Duration("SMTP_TIMEOUT", mailer.TimeoutDefault, "bound on one email send"),
		},
		Notification:  notification.Config{From: e.String("MAIL_FROM", notification.FromDefault, "sender of customer emails")},
		EmailClaimTTL: e.Duration("EMAIL_CLAIM_TTL", notification.ClaimTTLDefault, "lease of an email claim: a dead worker's unsent email is taken over after this; an accepted email's record is retried for this minus SMTP_TIMEOUT minus 5s (at most 90s); at least SMTP_TIMEOUT + 10s"),
		Consumer: worker.Config{
			MaxInFlight:     e.Int("WORKER_MAX_IN_FLIGHT", worker.MaxInFlightDefault, 1, 10000, "messages in flight per queue"),
			WaitTime:        e.Duration("WORKER_WAIT_TIME", worker.WaitTimeDefault, "SQS long-poll wait (at most 20s)"),
			HandlerTimeout:  e.Duration("WORKER_HANDLER_TIMEOUT", worker.HandlerTimeoutDefault, "bound on one message's handler"),
			ShutdownTimeout: e.Duration("WORKER_SHUTDOWN_TIMEOUT", worker.ShutdownTimeoutDefault, "time to finish in-flight messages after SIGTERM; keep under ECS stopTimeout"),
		},
	}
	cfg.EMF = loadEMF(e)
	cfg.Maintenance = loadMaintenance(e, common)
	env.CheckIdempotencyLease(e, cfg.IdemLease, common.Redis.Timeout)
	var level slog.Level
	lv := e.String("LOG_LEVEL", "info", "debug, info, warn or error")
	if err := level.UnmarshalText([]byte(strings.ToUpper(lv))); err != nil {
		e.Failf("LOG_LEVEL", "%q is not one of debug, info, warn, error", lv)
	}
	tr := env.LoadTracing(e, ServiceName, "")
	return &Config{Env: e, Common: common, App: cfg, Level: level, Tracing: tr}
}

// ServiceName is the worker's service.name in its spans, unless
// OTEL_SERVICE_NAME names another.
const ServiceName = "orderpipe-worker"

// loadEMF reads the EMF variables (all three, for Usage, whether it is on
// or not) and returns the emitter's configuration when METRICS_EMF is on.
func loadEMF(e *env.Env) *emf.Config {
	on := e.Bool("METRICS_EMF", false, "also write the metrics the stack's alarms and dashboard read as CloudWatch embedded metric format lines on stdout (on in the shipped ECS task, whose awslogs driver carries them to CloudWatch)")
	c := &emf.Config{
		Namespace: e.String("METRICS_EMF_NAMESPACE", emf.NamespaceDefault, "CloudWatch namespace of the EMF metrics (the stack sets <NamePrefix>orderpipe, which its alarms watch)"),
		Interval:  e.Duration("METRICS_EMF_INTERVAL", emf.IntervalDefault, "how often the EMF lines are written, aligned to the clock; from 1s to 1m (the stack's alarms use one-minute periods)"),
	}
	if err := (emf.Config{Interval: c.Interval}).Validate(); err != nil {
		e.Failf("METRICS_EMF_INTERVAL", "%s is out of bounds: want from %s to %s", c.Interval, emf.MinInterval, emf.MaxInterval)
	}
	if err := (emf.Config{Namespace: c.Namespace}).Validate(); err != nil || c.Namespace == "" {
		e.Failf("METRICS_EMF_NAMESPACE", "%q is not a CloudWatch namespace: printable ASCII, 1 to 255 characters, not AWS/...", c.Namespace)
	}
	if !on {
		return nil
	}
	return c
}

// Check refuses a configuration the worker could not run with, naming the
// variable, and completes App: the AWS configuration (its credential chain
// is built, no credentials are retrieved) and the pool configuration (with
// the IAM token source, which signs nothing yet). It contacts nothing.
func (c *Config) Check(ctx context.Context) error {
	if err := c.Env.Err(); err != nil {
		return err
	}
	var err error
	if c.App.AWS, err = c.Common.AWS(ctx); err != nil {
		return err
	}
	if c.App.Store, err = c.Common.StoreConfig(ctx); err != nil {
		return err
	}
	// Refuse a pool that would pin or break against the proxy, or send a
	// credential where it could be read.
	if _, err := store.PoolConfig(c.App.Store); err != nil {
		return err
	}
	if err := c.Tracing.Validate(); err != nil {
		return err
	}
	// Refuse an email claim a live sender could lose.
	return c.App.EmailClaim().Validate()
}
