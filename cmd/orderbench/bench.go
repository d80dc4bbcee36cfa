package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/bench"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/worker"
)

// benchCmd runs the benchmark on the local stack and prints its table.
// `orderbench bench worker PROFILE` is its helper: the pipeline in-process
// under runtime/pprof, for the profile phase.
func benchCmd(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 && args[0] == "worker" {
		return benchWorker(ctx, args[1:])
	}
	fs := newFlags("bench")
	phases := fs.String("phases", "", "comma-separated phases (default "+strings.Join(bench.DefaultPhases, ",")+", plus soak with --soak; all: "+strings.Join(bench.AllPhases, ",")+")")
	maxD := fs.Duration("max", 0, "load of the maximum run (default 60s)")
	ceilingD := fs.Duration("ceiling", 0, "load of the ceiling run (default 30s)")
	naiveD := fs.Duration("naive", 0, "load of the naive consumer run (default 30s)")
	latencyD := fs.Duration("latency", 0, "load of the run at half the maximum (default 60s)")
	profileD := fs.Duration("profile-duration", 0, "load of the profiled run (default 30s)")
	soak := fs.Duration("soak", benchSoakDefault(), "soak at half the maximum rate for this long (BENCH_SOAK; 0: no soak)")
	halfRate := fs.Float64("half-rate", 0, "offered load of the latency and soak runs (default: half the measured maximum)")
	messages := fs.Int("runtime-messages", 0, "backlog the runtime phase drains (default 50000)")
	raw := fs.Int("raw-concurrency", 0, "receive/delete loops of the emulator's raw ceiling (default 8)")
	backlog := fs.Int("backlog", 0, "visible messages per queue while the pipeline is saturated (default 500)")
	profile := fs.String("profile", "auto", "CPU profile of the worker: auto (when a target is missed), always, never")
	out := fs.String("out", ".stack/bench", "directory for bench.json, bench.md, bench.png, logs and the profile")
	workerBin := fs.String("worker", sibling("worker"), "the worker binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.benchConfig(ctx)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find orderbench: %w", err)
	}
	cfg.WorkerArgv, cfg.ProfileArgv = []string{*workerBin}, []string{self, "bench", "worker"}
	cfg.MaxDuration, cfg.CeilingDuration, cfg.NaiveDuration, cfg.LatencyDuration, cfg.ProfileDuration = *maxD, *ceilingD, *naiveD, *latencyD, *profileD
	cfg.Soak, cfg.HalfRate, cfg.RuntimeMessages, cfg.RawConcurrency, cfg.Backlog = *soak, *halfRate, *messages, *raw, *backlog
	cfg.Profile, cfg.OutDir, cfg.Out, cfg.Log = *profile, *out, c.Out, os.Stderr
	cfg.StateDir = envOr("ORDERPIPE_STATE_DIR", ".stack")
	if *phases != "" {
		cfg.Phases = strings.Split(*phases, ",")
	}
	if _, err := os.Stat(*workerBin); err != nil {
		return fmt.Errorf("worker binary %s: %w (run `make build`)", *workerBin, err)
	}
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "\nwritten to %s: bench.json, bench.md, bench.png\n", *out)
	if unmet := res.Unmet(); len(unmet) > 0 {
		names := make([]string, len(unmet))
		for i, t := range unmet {
			names[i] = t.Name
		}
		fmt.Fprintf(c.Out, "targets not met: %s (figures, not a test: the command succeeds)\n", strings.Join(names, "; "))
	}
	return nil
}

// benchConfig points the benchmark at the local stack, from the same
// variables as the worker and the tests.
func (c *cli) benchConfig(ctx context.Context) (bench.Config, error) {
	awsCfg, err := c.Common.AWS(ctx)
	if err != nil {
		return bench.Config{}, err
	}
	inFlight, err := strconv.Atoi(envOr("WORKER_MAX_IN_FLIGHT", strconv.Itoa(worker.MaxInFlightDefault)))
	if err != nil || inFlight < 1 {
		return bench.Config{}, errors.New("WORKER_MAX_IN_FLIGHT: want a positive whole number")
	}
	return bench.Config{
		Stack: bench.StackConfig{
			AWS:        awsCfg,
			AdminURL:   envOr("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
			ProxyURL:   c.Common.Store.URL,
			RedisURL:   c.Common.Redis.URL,
			SMTPAddr:   envOr("SMTP_ADDR", "127.0.0.1:1025"),
			MailpitURL: envOr("MAILPIT_URL", "http://127.0.0.1:8025"),
		},
		MaxInFlight: inFlight,
		DBMaxConns:  int(c.Common.Store.MaxConns),
	}, nil
}

// benchWorker runs the pipeline in this process, as cmd/worker does, with
// runtime/pprof writing a CPU profile to the path in args until SIGTERM.
// The worker binary has no profiling endpoint; this is the benchmark's way
// to see where its time goes.
func benchWorker(ctx context.Context, args []string) error {
	if len(args) != 1 {
		return errors.New("usage: orderbench bench worker CPUPROFILE")
	}
	cfg, err := benchWorkerConfig(ctx)
	if err != nil {
		return err
	}
	f, err := os.Create(args[0])
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	err = app.Run(ctx, cfg)
	pprof.StopCPUProfile()
	return err
}

// benchWorkerConfig reads the worker's variables as cmd/worker does.
func benchWorkerConfig(ctx context.Context) (app.Config, error) {
	var e env.Env
	common := env.LoadCommon(&e)
	cfg := app.Config{
		Topology:        common.Topology(),
		Handlers:        e.List("WORKER_HANDLERS", "billing,notification,inventory", ""),
		Redis:           common.Redis,
		IdemLease:       e.Duration("IDEMPOTENCY_LEASE", redisstore.LeaseDefault, ""),
		IdemRetention:   e.Duration("IDEMPOTENCY_RETENTION", redisstore.RetentionDefault, ""),
		ProductCacheTTL: e.Duration("PRODUCT_CACHE_TTL", redisstore.ProductCacheTTLDefault, ""),
		SMTP: mailer.Config{
			Addr:     e.String("SMTP_ADDR", "127.0.0.1:1025", ""),
			Username: e.String("SMTP_USERNAME", "", ""),
			Password: e.Secret("SMTP_PASSWORD", ""),
			Timeout:  e.Duration("SMTP_TIMEOUT", mailer.TimeoutDefault, ""),
		},
		Notification: notification.Config{From: e.String("MAIL_FROM", notification.FromDefault, "")},
		Consumer: worker.Config{
			MaxInFlight:     e.Int("WORKER_MAX_IN_FLIGHT", worker.MaxInFlightDefault, 1, 10000, ""),
			WaitTime:        e.Duration("WORKER_WAIT_TIME", worker.WaitTimeDefault, ""),
			HandlerTimeout:  e.Duration("WORKER_HANDLER_TIMEOUT", worker.HandlerTimeoutDefault, ""),
			ShutdownTimeout: e.Duration("WORKER_SHUTDOWN_TIMEOUT", worker.ShutdownTimeoutDefault, ""),
		},
		MetricsAddr: e.String("METRICS_ADDR", "", ""),
		Logger:      slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	env.CheckIdempotencyLease(&e, cfg.IdemLease, common.Redis.Timeout)
	if err := e.Err(); err != nil {
		return cfg, err
	}
	var err error
	if cfg.AWS, err = common.AWS(ctx); err != nil {
		return cfg, err
	}
	cfg.Store, err = common.StoreConfig(ctx)
	return cfg, err
}

// sibling is the path of a binary next to this one (bin/worker next to bin/orderbench).
func sibling(name string) string {
	self, err := os.Executable()
	if err != nil {
		return filepath.Join("bin", name)
	}
	return filepath.Join(filepath.Dir(self), name)
}

func benchSoakDefault() time.Duration {
	d, err := time.ParseDuration(os.Getenv("BENCH_SOAK"))
	if err != nil {
		return 0
	}
	return d
}
