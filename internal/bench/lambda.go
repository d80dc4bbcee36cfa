package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
)

// PhaseLambda is the Lambda shape: the three handlers as functions
// (cmd/lambda's configuration) behind lambdaharness's event source
// mappings, saturated as the max phase saturates the worker.
const PhaseLambda = "lambda"

// The Lambda phase's defaults.
const (
	LambdaDurationDefault    = 20 * time.Second
	LambdaConcurrencyDefault = 5  // each mapping's MaximumConcurrency
	LambdaBatchSizeDefault   = 10 // each mapping's BatchSize
	LambdaConnsDefault       = 2  // DB_MAX_CONNS per execution environment
	LambdaTimeoutDefault     = 30 * time.Second
)

// LambdaConfig configures the lambda phase.
type LambdaConfig struct {
	// Duration is the load. Defaults to LambdaDurationDefault.
	Duration time.Duration
	// Concurrency is each function's maximum concurrency (its mapping's
	// environments). Defaults to LambdaConcurrencyDefault; AWS accepts
	// 2 to 1000.
	Concurrency int
	// BatchSize is each mapping's batch size, 1 to 10 (more needs a
	// batching window). Defaults to LambdaBatchSizeDefault.
	BatchSize int
	// Conns is each environment's pool (DB_MAX_CONNS). Defaults to
	// LambdaConnsDefault.
	Conns int
	// Timeout is the functions' timeout. Defaults to LambdaTimeoutDefault.
	Timeout time.Duration
	// Function builds a function's configuration from the environment a
	// deployed function would have (the worker's variables pointed at
	// the benchmark's corner of the stack, DB_MAX_CONNS and
	// ORDERPIPE_HANDLER set), as cmd/lambda does. Required for the phase.
	Function func(ctx context.Context, environ []string) (app.FunctionConfig, error)
}

func (c *LambdaConfig) setDefaults() {
	if c.Duration <= 0 {
		c.Duration = LambdaDurationDefault
	}
	if c.Concurrency <= 0 {
		c.Concurrency = LambdaConcurrencyDefault
	}
	if c.BatchSize <= 0 {
		c.BatchSize = LambdaBatchSizeDefault
	}
	if c.Conns <= 0 {
		c.Conns = LambdaConnsDefault
	}
	if c.Timeout <= 0 {
		c.Timeout = LambdaTimeoutDefault
	}
}

func (c *LambdaConfig) validate() error {
	switch {
	case c.Function == nil:
		return errors.New("bench: the lambda phase needs Config.Lambda.Function")
	case c.Concurrency < 2 || c.Concurrency > 1000:
		return fmt.Errorf("bench: the lambda phase's maximum concurrency %d: AWS accepts 2 to 1000", c.Concurrency)
	case c.BatchSize > 10:
		return fmt.Errorf("bench: the lambda phase's batch size %d: at most 10 without a batching window", c.BatchSize)
	}
	return nil
}

// LambdaResult is the lambda phase's run and what its event source
// mappings did.
type LambdaResult struct {
	// Run is the run as the max phase measures the worker's: throughput,
	// latency, peak database server connections, orders/s per connection.
	Run *RunResult `json:"run"`
	// The settings.
	Concurrency     int     `json:"max_concurrency_per_function"`
	BatchSize       int     `json:"batch_size"`
	ConnsPerEnv     int     `json:"db_conns_per_environment"`
	TimeoutSeconds  float64 `json:"function_timeout_s"`
	DurationSeconds float64 `json:"duration_s"`
	// Environments is the peak of concurrent execution environments, all
	// functions together: the harness keeps each environment it starts
	// until the end, so it is how many it started (its cold starts).
	Environments int `json:"peak_environments"`
	// EnvironmentsByFunction is each function's.
	EnvironmentsByFunction map[string]int `json:"peak_environments_by_function"`
	// OrdersPerEnv is the throughput per concurrent environment.
	OrdersPerEnv float64 `json:"orders_per_s_per_environment"`
	// BusyEnvironments is the invocations' time over the run's: the mean
	// of environments busy with an invocation.
	BusyEnvironments float64 `json:"mean_busy_environments"`
	Invocations      int     `json:"invocations"`
	Records          int     `json:"records"`
	ItemFailures     int     `json:"item_failures"`
	BatchErrors      int     `json:"batch_errors"`
}

// PerEnvironment is the throughput per concurrent environment at the peak.
func (l *LambdaResult) PerEnvironment() float64 {
	if l.Run == nil || l.Environments == 0 {
		return 0
	}
	return l.Run.Throughput / float64(l.Environments)
}

// addStats sums the mappings' stats into l (the run's elapsed time set).
func (l *LambdaResult) addStats(stats map[string]lambdaharness.Stats) {
	l.EnvironmentsByFunction = map[string]int{}
	var busy time.Duration
	for _, h := range slices.Sorted(maps.Keys(stats)) {
		st := stats[h]
		l.EnvironmentsByFunction[h] = st.Environments
		l.Environments += st.Environments
		l.Invocations += st.Invocations
		l.Records += st.Records
		l.ItemFailures += st.ItemFailures
		l.BatchErrors += st.BatchErrors
		busy += st.Busy
	}
	if l.Run != nil && l.Run.Elapsed > 0 {
		l.BusyEnvironments = busy.Seconds() / l.Run.Elapsed
	}
	l.OrdersPerEnv = l.PerEnvironment()
}

// lambda runs the lambda phase into the result.
func (b *Bench) lambda(ctx context.Context) error {
	lc := b.cfg.Lambda
	b.logf("the Lambda shape: 3 functions behind lambdaharness's event source mappings (≤ %d environments each, batch %d, %d database connections each, %s timeout), %d-message backlog per queue, for %s\n",
		lc.Concurrency, lc.BatchSize, lc.Conns, lc.Timeout, b.cfg.Backlog, lc.Duration)
	l := &LambdaResult{Concurrency: lc.Concurrency, BatchSize: lc.BatchSize, ConnsPerEnv: lc.Conns,
		TimeoutSeconds: lc.Timeout.Seconds(), DurationSeconds: lc.Duration.Seconds()}
	b.res.Lambda = l
	stats, run, err := b.lambdaRun(ctx, lc)
	l.Run, err = b.keep(run, err)
	l.addStats(stats)
	b.logf("lambda: %d environments at peak (%v), %.1f orders/s per environment, %.1f busy on average; %d invocations, %d item failures, %d failed batches\n",
		l.Environments, l.EnvironmentsByFunction, l.OrdersPerEnv, l.BusyEnvironments, l.Invocations, l.ItemFailures, l.BatchErrors)
	return err
}

// lambdaRun is the max phase's run (pipeline) with the functions, in this
// process, in place of the worker process: the same reset, backlog-gated
// load, completions and connection count.
func (b *Bench) lambdaRun(ctx context.Context, lc LambdaConfig) (map[string]lambdaharness.Stats, RunResult, error) {
	r := pipelineRun{name: "lambda", duration: lc.Duration, warmup: 5 * time.Second}
	res := RunResult{Name: r.name}
	if err := b.s.Reset(ctx); err != nil {
		return nil, res, err
	}
	logFile, err := os.Create(filepath.Join(b.cfg.OutDir, "lambda.log"))
	if err != nil {
		return nil, res, fmt.Errorf("bench: lambda log: %w", err)
	}
	defer func() { _ = logFile.Close() }() // the log is a diagnostic
	p, err := b.startFunctions(ctx, lc, slog.New(slog.NewJSONHandler(logFile, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return nil, res, err
	}
	conns := SampleConns(ctx, b.s.Admin, b.s.Cfg.DBName, 100*time.Millisecond)
	cost := b.startCost(ctx, 0, nil)
	tr := NewTracker()
	start := time.Now()
	lr, loadErr := b.load(ctx, r, tr)
	waitErr := b.s.WaitProcessed(ctx, lr.Published, 90*time.Second, nil)
	res.CPU, res.Cost = cost.stop(ctx, func() int { n, _ := b.s.Processed(ctx); return n / 3 })
	res.DBConns = conns.Stop()
	stopErr := p.Stop()
	stats := p.Stats()
	if err := errors.Join(waitErr, stopErr); err != nil {
		return stats, res, err
	}
	if lr.Published == 0 {
		return stats, res, fmt.Errorf("bench: lambda: nothing published: %w", loadErr)
	}
	cs, err := b.s.Completions(ctx, tr)
	if err != nil {
		return stats, res, err
	}
	res.Published, res.Completed, res.Errors = lr.Published, len(cs), lr.Failed
	res.Elapsed = time.Since(start).Seconds()
	res.fill(cs, start, r)
	res.Backlog = lr.Backlog
	return stats, res, nil
}

// startFunctions starts the three functions, configured as cmd/lambda
// configures them from the benchmark's environment, behind their event
// source mappings. Their environments start on their first batch (cold
// starts): nothing is connected before the load.
func (b *Bench) startFunctions(ctx context.Context, lc LambdaConfig, logger *slog.Logger) (*lambdaharness.Pipeline, error) {
	fc, err := lc.Function(ctx, Env(b.s.WorkerEnv(b.cfg.BaseEnv, b.net), map[string]string{
		"DB_MAX_CONNS":      strconv.Itoa(lc.Conns),
		"ORDERPIPE_HANDLER": "billing", // each function's is set by StartPipeline
	}))
	if err != nil {
		return nil, fmt.Errorf("bench: the functions' configuration: %w", err)
	}
	if lc.Timeout <= fc.Batch.StartMargin {
		return nil, fmt.Errorf("bench: the function timeout %s leaves no time past the start margin %s", lc.Timeout, fc.Batch.StartMargin)
	}
	fc.App.AWS, fc.App.Logger = b.net.AWS, logger
	return lambdaharness.StartPipeline(ctx, lambdaharness.PipelineConfig{
		Function: fc,
		ESM:      lambdaharness.Config{BatchSize: lc.BatchSize, MaxConcurrency: lc.Concurrency, Timeout: lc.Timeout, WaitTime: time.Second, Logger: logger},
	}, b.s.Applied)
}

// lambdaRow is the lambda phase's line of the table, under the worker's.
func (r *Result) lambdaRow(b *strings.Builder) {
	l := r.Lambda
	if l == nil || l.Run == nil {
		return
	}
	name := fmt.Sprintf("Lambda shape through lambdaharness (3 functions ≤ %d environments, batch %d, %d DB conns each, saturated): %d environments at peak, **%.1f orders/s per environment**",
		l.Concurrency, l.BatchSize, l.ConnsPerEnv, l.Environments, l.PerEnvironment())
	r.runRow(b, name, l.Run, "")
}
