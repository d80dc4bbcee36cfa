package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/orderpipe/orderpipe/cmd/internal/workerenv"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/bench"
	"github.com/orderpipe/orderpipe/internal/faults"
)

// benchCmd runs the benchmark on the local stack and prints its table.
// `orderbench bench worker PROFILE` is its helper: the pipeline in-process
// under runtime/pprof, for the profile phase.
func benchCmd(ctx context.Context, c *cli, args []string) error {
	if len(args) > 0 && args[0] == "worker" {
		return benchWorker(ctx, args[1:])
	}
	var f benchFlags
	if err := f.parse(args); err != nil {
		return err
	}
	cfg, err := c.benchConfig(ctx)
	if err != nil {
		return err
	}
	if err := f.apply(&cfg); err != nil {
		return err
	}
	cfg.Out, cfg.Log = c.Out, os.Stderr
	res, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "\nwritten to %s: bench.json, bench.md, bench.png (bench-cloud.png for the cloud profile)\n", f.out)
	if unmet := res.Unmet(); len(unmet) > 0 {
		names := make([]string, len(unmet))
		for i, t := range unmet {
			names[i] = t.Name
		}
		fmt.Fprintf(c.Out, "targets not met: %s (figures, not a test: the command succeeds)\n", strings.Join(names, "; "))
	}
	return nil
}

// benchFlags are the flags of `orderbench bench`.
type benchFlags struct {
	phases, profile, out, workerBin, network         string
	maxD, ceilingD, naiveD, latencyD, profileD, soak time.Duration
	halfRate                                         float64
	messages, raw, backlog                           int
	ledgerDays, ledgerPerDay                         int
	lambda                                           bench.LambdaConfig
}

func (f *benchFlags) parse(args []string) error {
	fs := newFlags("bench")
	fs.StringVar(&f.phases, "phases", "", "comma-separated phases (default "+strings.Join(bench.DefaultPhases, ",")+", plus soak with --soak; all: "+strings.Join(bench.AllPhases, ",")+")")
	fs.DurationVar(&f.maxD, "max", 0, "load of the maximum run (default 60s)")
	fs.DurationVar(&f.ceilingD, "ceiling", 0, "load of the ceiling run (default 30s)")
	fs.DurationVar(&f.naiveD, "naive", 0, "load of the naive consumer run (default 30s)")
	fs.DurationVar(&f.latencyD, "latency", 0, "load of the run at half the maximum (default 60s)")
	fs.DurationVar(&f.profileD, "profile-duration", 0, "load of the profiled run (default 30s)")
	fs.DurationVar(&f.soak, "soak", benchSoakDefault(), "soak at half the maximum rate for this long (BENCH_SOAK; 0: no soak)")
	fs.Float64Var(&f.halfRate, "half-rate", 0, "offered load of the latency and soak runs (default: half the measured maximum)")
	fs.IntVar(&f.messages, "runtime-messages", 0, "backlog the runtime phase drains (default 50000)")
	fs.IntVar(&f.raw, "raw-concurrency", 0, "receive/delete loops of the emulator's raw ceiling (default 8)")
	fs.IntVar(&f.backlog, "backlog", 0, "visible messages per queue while the pipeline is saturated (default 500)")
	fs.IntVar(&f.ledgerDays, "ledger-days", bench.LedgerDaysDefault, "the ledger phase's fill: days of orders within the retention (plus one past it), at --ledger-per-day; at least 15")
	fs.IntVar(&f.ledgerPerDay, "ledger-per-day", bench.LedgerOrdersPerDayDefault, "the ledger phase's orders a day (three ledger rows each)")
	lambdaFlags(fs, &f.lambda)
	fs.StringVar(&f.profile, "profile", "auto", "CPU profile of the worker: auto (when a target is missed), always, never")
	fs.StringVar(&f.out, "out", ".stack/bench", "directory for bench.json, bench.md, bench.png, logs and the profile")
	fs.StringVar(&f.network, "network", bench.NetworkLoopback, "network profiles to run, comma-separated, in order: loopback (the local stack as it is), cloud (toxiproxy latency as in one AWS region: 10 ms per SQS/SNS call, 1 ms per database and 0.5 ms per Redis round trip, 20 ms per SMTP reply; max, ceiling and naive runs only)")
	fs.StringVar(&f.workerBin, "worker", sibling("worker"), "the worker binary")
	return fs.Parse(args)
}

// apply sets what the flags decide in cfg: the runs, the worker binaries
// (bin/worker, and this binary's `bench worker` to profile) and the outputs.
func (f *benchFlags) apply(cfg *bench.Config) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find orderbench: %w", err)
	}
	if _, err := os.Stat(f.workerBin); err != nil {
		return fmt.Errorf("worker binary %s: %w (run `make build`)", f.workerBin, err)
	}
	cfg.WorkerArgv, cfg.ProfileArgv = []string{f.workerBin}, []string{self, "bench", "worker"}
	cfg.MaxDuration, cfg.CeilingDuration, cfg.NaiveDuration, cfg.LatencyDuration, cfg.ProfileDuration = f.maxD, f.ceilingD, f.naiveD, f.latencyD, f.profileD
	cfg.Soak, cfg.HalfRate, cfg.RuntimeMessages, cfg.RawConcurrency, cfg.Backlog = f.soak, f.halfRate, f.messages, f.raw, f.backlog
	cfg.Profile, cfg.OutDir = f.profile, f.out
	cfg.LedgerDays, cfg.LedgerOrdersPerDay = f.ledgerDays, f.ledgerPerDay
	cfg.Lambda, cfg.Lambda.Function = f.lambda, lambdaFunction
	cfg.StateDir = envOr("ORDERPIPE_STATE_DIR", ".stack")
	if f.phases != "" {
		cfg.Phases = strings.Split(f.phases, ",")
	}
	cfg.Networks = strings.Split(f.network, ",")
	cfg.ToxiproxyURL = envOr("TOXIPROXY_URL", faults.ToxiproxyURLDefault)
	return nil
}

// benchConfig points the benchmark at the local stack, from the same
// variables as the worker and the tests. The workers it starts inherit the
// worker's variables (WORKER_MAX_IN_FLIGHT, DB_MAX_CONNS, ...); they are
// read here as the workers read them.
func (c *cli) benchConfig(ctx context.Context) (bench.Config, error) {
	w := workerenv.Load(os.LookupEnv)
	if err := w.Env.Err(); err != nil {
		return bench.Config{}, err
	}
	awsCfg, err := c.Common.AWS(ctx)
	if err != nil {
		return bench.Config{}, err
	}
	return bench.Config{
		Stack: bench.StackConfig{
			AWS:        awsCfg,
			AdminURL:   envOr("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"),
			ProxyURL:   c.Common.Store.URL,
			RedisURL:   c.Common.Redis.URL,
			SMTPAddr:   w.App.SMTP.Addr,
			MailpitURL: envOr("MAILPIT_URL", "http://127.0.0.1:8025"),
		},
		MaxInFlight: w.App.Consumer.MaxInFlight,
		DBMaxConns:  w.Common.Store.MaxConns,
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
	w := workerenv.Load(os.LookupEnv)
	if err := w.Check(ctx); err != nil {
		return err
	}
	w.App.Logger = slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: w.Level}))
	f, err := os.Create(args[0])
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close() // nothing was written
		return fmt.Errorf("cpu profile: %w", err)
	}
	err = app.Run(ctx, w.App)
	pprof.StopCPUProfile()
	if cerr := f.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("cpu profile: %w", cerr)
	}
	return err
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
