// Command worker consumes the order queues and runs the billing,
// notification and inventory handlers. Configuration comes from environment
// variables: `worker -h` lists them; `worker --version` prints the version
// and build information without reading any.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/orderpipe/orderpipe/cmd/internal/buildinfo"
	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/worker"
)

// version is stamped by the build: -ldflags "-X main.version=...".
var version string

func main() {
	// Before any variable is read: the version needs no configuration.
	if len(os.Args) > 1 && buildinfo.Requested(os.Args[1]) {
		fmt.Print(buildinfo.String("worker", version))
		return
	}
	w := load(os.LookupEnv)
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		fmt.Fprintln(os.Stderr, "usage: worker [healthcheck | --version]\n\nConsumes the order queues. `worker healthcheck` exits 0 if the worker\nin this container answers /healthz (for the ECS container health check).\n`worker --version` prints the version and the build information.\n\nEnvironment variables:")
		w.env.Usage(os.Stderr)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(w.cfg.MetricsAddr))
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: w.level}))
	redisstore.RouteRedisLog(log)
	w.cfg.Logger = log
	ctx, stop := signalContext(log)
	defer stop()
	if err := w.check(ctx); err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	log.Info("configuration", w.env.Effective()...)
	if err := app.Run(ctx, w.cfg); err != nil {
		log.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

// workerConfig is the worker's configuration as read from the environment
// by load; check accepts or refuses it. main runs load(os.LookupEnv) and
// check, and nothing else decides whether the worker may start.
type workerConfig struct {
	env    *env.Env
	common env.Common
	cfg    app.Config
	level  slog.Level
}

// check refuses a configuration the worker could not run with, naming the
// variable, and completes cfg: the AWS configuration (its credential chain
// is built, no credentials are retrieved) and the pool configuration (with
// the IAM token source, which signs nothing yet). It contacts nothing.
func (w *workerConfig) check(ctx context.Context) error {
	if err := w.env.Err(); err != nil {
		return err
	}
	var err error
	if w.cfg.AWS, err = w.common.AWS(ctx); err != nil {
		return err
	}
	if w.cfg.Store, err = w.common.StoreConfig(ctx); err != nil {
		return err
	}
	// Refuse a pool that would pin or break against the proxy, or send a
	// credential where it could be read.
	if _, err := store.PoolConfig(w.cfg.Store); err != nil {
		return err
	}
	// Refuse an email claim a live sender could lose.
	return w.cfg.EmailClaim().Validate()
}

// load reads every variable through lookup. Errors are collected in the
// Env, for check.
func load(lookup env.LookupFunc) *workerConfig {
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
	env.CheckIdempotencyLease(e, cfg.IdemLease, common.Redis.Timeout)
	var level slog.Level
	lv := e.String("LOG_LEVEL", "info", "debug, info, warn or error")
	if err := level.UnmarshalText([]byte(strings.ToUpper(lv))); err != nil {
		e.Fail("LOG_LEVEL", "%q is not one of debug, info, warn, error", lv)
	}
	return &workerConfig{env: e, common: common, cfg: cfg, level: level}
}

// signalContext is cancelled by the first SIGTERM or SIGINT (drain); a second
// one exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		s := <-ch
		log.Info("signal received: draining", "signal", s.String())
		cancel()
		s = <-ch
		log.Warn("second signal: stopping now", "signal", s.String())
		os.Exit(1)
	}()
	return ctx, func() { signal.Stop(ch); cancel() }
}

// healthcheck asks the worker in this container for /healthz: the ECS
// container health check (the distroless image has no curl).
func healthcheck(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		fmt.Fprintln(os.Stderr, "healthcheck: METRICS_ADDR has no port:", addr)
		return 1
	}
	client := &http.Client{Timeout: 3 * time.Second}
	resp, err := client.Get("http://127.0.0.1:" + port + "/healthz")
	if err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, "healthcheck: /healthz answered", resp.Status)
		return 1
	}
	return 0
}
