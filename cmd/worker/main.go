// Command worker consumes the order queues and runs the billing,
// notification and inventory handlers. Configuration comes from environment
// variables: `worker -h` lists them.
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

	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/worker"
)

func main() {
	var e env.Env
	common := env.LoadCommon(&e)
	cfg, logLevel := load(&e, common)
	if len(os.Args) > 1 && (os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help") {
		fmt.Fprintln(os.Stderr, "usage: worker [healthcheck]\n\nConsumes the order queues. `worker healthcheck` exits 0 if the worker\nin this container answers /healthz (for the ECS container health check).\n\nEnvironment variables:")
		e.Usage(os.Stderr)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck(cfg.MetricsAddr))
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: logLevel}))
	cfg.Logger = log
	if err := e.Err(); err != nil {
		log.Error("bad configuration", "err", err)
		os.Exit(2)
	}
	log.Info("configuration", e.Effective()...)

	ctx, stop := signalContext(log)
	defer stop()
	var err error
	if cfg.AWS, err = common.AWS(ctx); err != nil {
		log.Error("startup failed", "err", err)
		os.Exit(1)
	}
	if cfg.Store, err = common.StoreConfig(ctx); err == nil {
		_, err = store.PoolConfig(cfg.Store) // refuse a pool that would pin or break against the proxy
	}
	if err != nil {
		log.Error("bad database configuration", "err", err)
		os.Exit(2)
	}
	if err := app.Run(ctx, cfg); err != nil {
		log.Error("worker failed", "err", err)
		os.Exit(1)
	}
}

func load(e *env.Env, common env.Common) (app.Config, slog.Level) {
	cfg := app.Config{
		Topology:        common.Topology(),
		MetricsAddr:     e.String("METRICS_ADDR", ":9090", "listen address of the Prometheus /metrics endpoint; empty to turn it off"),
		Handlers:        e.List("WORKER_HANDLERS", "billing,notification,inventory", "handlers this process runs (comma-separated)"),
		Store:           common.Store,
		Redis:           common.Redis,
		IdemLease:       e.Duration("IDEMPOTENCY_LEASE", store.LeaseDefault, "in-progress key TTL in Redis, renewed while a handler runs; a dead worker's copy is retried after at most this"),
		IdemRetention:   e.Duration("IDEMPOTENCY_RETENTION", store.RetentionDefault, "how long Redis remembers a completed event (later duplicates meet the database ledger)"),
		ProductCacheTTL: e.Duration("PRODUCT_CACHE_TTL", store.ProductCacheTTLDefault, "TTL of product entries (name, price) in Redis"),
		SMTP: mailer.Config{
			Addr:     e.String("SMTP_ADDR", "127.0.0.1:1025", "SMTP server host:port (Mailpit locally, SES SMTP in AWS)"),
			Username: e.String("SMTP_USERNAME", "", "SMTP user; empty for no authentication"),
			Password: e.Secret("SMTP_PASSWORD", "SMTP password (never logged)"),
			Timeout:  e.Duration("SMTP_TIMEOUT", mailer.TimeoutDefault, "bound on one email send"),
		},
		Notification: notification.Config{From: e.String("MAIL_FROM", notification.FromDefault, "sender of customer emails")},
		Consumer: worker.Config{
			MaxInFlight:     e.Int("WORKER_MAX_IN_FLIGHT", worker.MaxInFlightDefault, 1, 10000, "messages in flight per queue"),
			WaitTime:        e.Duration("WORKER_WAIT_TIME", worker.WaitTimeDefault, "SQS long-poll wait (at most 20s)"),
			HandlerTimeout:  e.Duration("WORKER_HANDLER_TIMEOUT", worker.HandlerTimeoutDefault, "bound on one message's handler"),
			ShutdownTimeout: e.Duration("WORKER_SHUTDOWN_TIMEOUT", worker.ShutdownTimeoutDefault, "time to finish in-flight messages after SIGTERM; keep under ECS stopTimeout"),
		},
	}
	var level slog.Level
	lv := e.String("LOG_LEVEL", "info", "debug, info, warn or error")
	if err := level.UnmarshalText([]byte(strings.ToUpper(lv))); err != nil {
		e.Fail("LOG_LEVEL", "%q is not one of debug, info, warn, error", lv)
	}
	return cfg, level
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
