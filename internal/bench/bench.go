package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/internal/faults"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/worker"
)

// Phases, in the order they run.
const (
	PhaseMax     = "max"     // the pipeline saturated: its maximum sustained rate
	PhaseCeiling = "ceiling" // the handlers straight on the database
	PhaseMinimal = "minimal" // the effects' essential statements alone
	PhaseNaive   = "naive"   // one goroutine per queue, one message at a time
	PhaseLatency = "latency" // the pipeline at half the maximum rate
	PhaseRuntime = "runtime" // worker.Consumer alone against the endpoint's raw ceiling
	PhaseSoak    = "soak"    // the worker's memory at half the maximum rate, for Config.Soak
	PhaseLedger  = "ledger"  // max and ceiling with the ledger empty, then pre-filled (Config.LedgerDays)
	PhaseProfile = "profile" // a CPU profile of the worker under saturation
)

// AllPhases lists every phase in running order.
var AllPhases = []string{PhaseMax, PhaseLambda, PhaseCeiling, PhaseMinimal, PhaseNaive, PhaseLatency, PhaseRuntime, PhaseSoak, PhaseLedger, PhaseProfile}

// DefaultPhases is what `make bench` runs. The soak runs when Config.Soak
// is set; the profile when a target is missed (Config.Profile "auto").
var DefaultPhases = []string{PhaseMax, PhaseLambda, PhaseCeiling, PhaseMinimal, PhaseNaive, PhaseLatency, PhaseRuntime}

// Config configures Run.
type Config struct {
	Stack StackConfig
	// WorkerArgv starts a worker process (bin/worker). Required.
	WorkerArgv []string
	// ProfileArgv starts a worker that runs the pipeline in-process and
	// writes a CPU profile to the path appended to it on SIGTERM. Required
	// for the profile phase.
	ProfileArgv []string
	// BaseEnv is the workers' environment before the benchmark points it at
	// its own database, topology and Redis prefix. Defaults to os.Environ().
	BaseEnv []string
	// MaxInFlight is the worker's messages in flight per queue
	// (WORKER_MAX_IN_FLIGHT): the ceiling runs that many goroutines per
	// handler. Defaults to worker.MaxInFlightDefault.
	MaxInFlight int
	// DBMaxConns is the worker's pool size (DB_MAX_CONNS), used by the
	// ceiling and the naive consumer too. Defaults to store.MaxConnsDefault.
	DBMaxConns int32
	// Backlog bounds the visible messages per queue while a run saturates
	// the pipeline. Defaults to 500.
	Backlog int
	// Phases to run. Defaults to DefaultPhases (plus PhaseSoak when Soak is set).
	Phases []string
	// Durations of the load in each phase. Default to 60s, 30s, 30s, 60s, 30s.
	MaxDuration, CeilingDuration, NaiveDuration, LatencyDuration, ProfileDuration time.Duration
	// RuntimeMessages is the backlog the runtime phase drains. Defaults to 50,000.
	RuntimeMessages int
	// RawConcurrency is how many receive/delete loops the raw ceiling runs.
	// Defaults to 8.
	RawConcurrency int
	// Soak is the length of the soak; 0 skips it.
	Soak time.Duration
	// Lambda configures the lambda phase.
	Lambda LambdaConfig
	// LedgerDays is the ledger phase's fill, in days of orders within the
	// retention (its workers' LEDGER_RETENTION; one more day, past it, is
	// generated for the retention to remove), at LedgerOrdersPerDay.
	// Default to a year (LedgerDaysDefault) at 100,000 a day; at least 15,
	// the shortest retention the worker accepts.
	LedgerDays, LedgerOrdersPerDay int
	// HalfRate is the offered load of the latency and soak phases; 0 takes
	// half the maximum measured in this run, or in the last bench.json.
	HalfRate float64
	// Profile is "auto" (profile when a target is missed), "always" or "never".
	// Defaults to "auto".
	Profile string
	// OutDir receives bench.json, bench.md, bench.png, the worker logs and
	// the profile. Required.
	OutDir string
	// StateDir is scripts/stack.sh's state directory, whose pid files name
	// the emulator, Mailpit and PgBouncer processes. Defaults to ".stack".
	StateDir string
	// Out receives the table; Log the progress. Default to stdout and stderr.
	Out, Log io.Writer
	// Seed seeds the order generator. Defaults to 1.
	Seed uint64
	// Networks are the network profiles to run, in order (NetworkLoopback,
	// NetworkCloud). Under the cloud profile only the maximum, ceiling and
	// naive runs are made: the ratios that latency changes. Defaults to
	// loopback.
	Networks []string
	// ToxiproxyURL is toxiproxy's API, for the cloud profile. Defaults to
	// faults.ToxiproxyURLDefault.
	ToxiproxyURL string
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	defInt := func(n *int, v int) {
		if *n <= 0 {
			*n = v
		}
	}
	def(&c.MaxDuration, 60*time.Second)
	def(&c.CeilingDuration, 30*time.Second)
	def(&c.NaiveDuration, 30*time.Second)
	def(&c.LatencyDuration, 60*time.Second)
	def(&c.ProfileDuration, 30*time.Second)
	defInt(&c.MaxInFlight, worker.MaxInFlightDefault)
	if c.DBMaxConns <= 0 {
		c.DBMaxConns = store.MaxConnsDefault
	}
	defInt(&c.Backlog, 500)
	defInt(&c.RuntimeMessages, 50_000)
	defInt(&c.RawConcurrency, 8)
	c.Lambda.setDefaults()
	defInt(&c.LedgerDays, LedgerDaysDefault)
	defInt(&c.LedgerOrdersPerDay, LedgerOrdersPerDayDefault)
	if len(c.Phases) == 0 {
		c.Phases = slices.Clone(DefaultPhases)
		if c.Soak > 0 {
			c.Phases = append(c.Phases, PhaseSoak)
		}
	}
	if c.Profile == "" {
		c.Profile = "auto"
	}
	if c.BaseEnv == nil {
		c.BaseEnv = os.Environ()
	}
	if c.Out == nil {
		c.Out = os.Stdout
	}
	if c.Log == nil {
		c.Log = os.Stderr
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.StateDir == "" {
		c.StateDir = ".stack"
	}
	if len(c.Networks) == 0 {
		c.Networks = []string{NetworkLoopback}
	}
	if c.ToxiproxyURL == "" {
		c.ToxiproxyURL = faults.ToxiproxyURLDefault
	}
}

// Validate names the first bad field.
func (c *Config) Validate() error {
	for _, p := range c.Phases {
		if !slices.Contains(AllPhases, p) {
			return fmt.Errorf("bench: unknown phase %q (want %s)", p, strings.Join(AllPhases, ", "))
		}
	}
	for _, n := range c.Networks {
		if !slices.Contains(Networks, n) {
			return fmt.Errorf("bench: unknown network %q (want %s)", n, strings.Join(Networks, ", "))
		}
	}
	if slices.Contains(c.Phases, PhaseLambda) {
		if err := c.Lambda.validate(); err != nil {
			return err
		}
	}
	switch {
	case len(c.WorkerArgv) == 0:
		return errors.New("bench: Config.WorkerArgv is required")
	case c.OutDir == "":
		return errors.New("bench: Config.OutDir is required")
	case c.Profile != "auto" && c.Profile != "always" && c.Profile != "never":
		return fmt.Errorf("bench: Config.Profile %q: want auto, always or never", c.Profile)
	case slices.Contains(c.Phases, PhaseLedger) && c.LedgerDays < 15:
		return fmt.Errorf("bench: the ledger phase's fill of %d days is under 15, the shortest LEDGER_RETENTION the worker accepts", c.LedgerDays)
	case slices.Contains(c.Phases, PhaseSoak) && c.Soak <= 0:
		return errors.New("bench: the soak phase needs Config.Soak")
	}
	return nil
}

// Bench is one benchmark run.
type Bench struct {
	cfg Config
	s   *Stack
	// sqs is the runtime phase's client: enough idle connections for every
	// concurrent call, so neither drain pays for connection churn.
	sqs    *sqs.Client
	gen    *Generator
	report *Report
	// res and net are the network profile being run.
	res *Result
	net *Net
}

// cloudPhases are the phases the cloud profile runs: what latency changes
// the ratios of.
var cloudPhases = []string{PhaseMax, PhaseCeiling, PhaseMinimal, PhaseNaive}

// Run runs the configured phases on the local stack, then writes bench.json,
// bench.md (the table, also printed to Out) and bench.png (the maximum
// run over time) to OutDir. A phase that fails ends the run; what was
// measured until then is written.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	s, err := OpenStack(ctx, cfg.Stack)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	b := &Bench{cfg: cfg, s: s, gen: NewGenerator(cfg.Seed, s.Cfg.Domain), sqs: roomySQS(cfg), report: &Report{}}
	machine := ThisMachine(ctx, s.Admin)
	defer func() { _ = s.Reset(context.WithoutCancel(ctx)) }() // leave no emails, keys or messages behind
	var runErr error
	for _, network := range cfg.Networks {
		if runErr = b.network(ctx, network, machine); runErr != nil {
			break
		}
	}
	return b.report, errors.Join(runErr, b.write())
}

// network runs the phases under one network profile.
func (b *Bench) network(ctx context.Context, name string, machine Machine) error {
	n, err := OpenNet(ctx, b.s, name, b.cfg.ToxiproxyURL)
	if err != nil {
		return err
	}
	defer n.Close()
	b.net = n
	b.res = &Result{Machine: machine, StartedAt: time.Now().UTC(), Network: name, NetworkProfile: n.Links, NetworkDescription: n.Describe(),
		Settings: Settings{
			MaxInFlight: b.cfg.MaxInFlight, DBMaxConns: int(b.cfg.DBMaxConns), Backlog: b.cfg.Backlog,
			MaxSeconds: b.cfg.MaxDuration.Seconds(), CeilingSeconds: b.cfg.CeilingDuration.Seconds(),
			NaiveSeconds: b.cfg.NaiveDuration.Seconds(), LatencySeconds: b.cfg.LatencyDuration.Seconds(),
			RuntimeMessages: b.cfg.RuntimeMessages,
		}}
	b.report.Profiles = append(b.report.Profiles, b.res)
	b.logf("\n=== network: %s ===\n", n.Describe())
	if err := b.phases(ctx); err != nil {
		return fmt.Errorf("%s network: %w", name, err)
	}
	return nil
}

func (b *Bench) phases(ctx context.Context) error {
	for _, p := range AllPhases {
		if p == PhaseProfile || !slices.Contains(b.cfg.Phases, p) {
			continue
		}
		if b.net.Name != NetworkLoopback && !slices.Contains(cloudPhases, p) {
			continue
		}
		if err := b.phase(ctx, p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		b.res.evaluate()
		_ = b.report.WriteJSON(filepath.Join(b.cfg.OutDir, "bench.json"))
	}
	b.res.evaluate()
	if b.net.Name != NetworkLoopback {
		return nil // a CPU profile shows no network wait: the table's CPU breakdown and the profile say where the time went
	}
	want := b.cfg.Profile == "always" || slices.Contains(b.cfg.Phases, PhaseProfile) ||
		(b.cfg.Profile == "auto" && len(b.res.Unmet()) > 0)
	if want && b.cfg.Profile != "never" {
		if err := b.profile(ctx); err != nil {
			return fmt.Errorf("profile: %w", err)
		}
	}
	return nil
}

func (b *Bench) phase(ctx context.Context, p string) error {
	b.logf("\n== %s ==\n", p)
	var err error
	switch p {
	case PhaseMax:
		b.logf("saturating the pipeline (bin/worker, %d-message backlog per queue) for %s\n", b.cfg.Backlog, b.cfg.MaxDuration)
		b.res.Max, err = b.runPipeline(ctx, pipelineRun{name: "max", argv: b.cfg.WorkerArgv, duration: b.cfg.MaxDuration, warmup: 5 * time.Second, series: true, procEvery: time.Second})
	case PhaseLambda:
		err = b.lambda(ctx)
	case PhaseCeiling:
		b.logf("the three handlers straight on the database, %d goroutines each, %d connections, for %s\n", b.cfg.MaxInFlight, b.cfg.DBMaxConns, b.cfg.CeilingDuration)
		b.res.Ceiling, err = b.keep(b.ceiling(ctx, b.cfg.CeilingDuration))
	case PhaseMinimal:
		b.logf("the effects' essential statements alone, %d goroutines each, %d connections, for %s\n", b.cfg.MaxInFlight, b.cfg.DBMaxConns, b.cfg.CeilingDuration)
		b.res.Minimal, err = b.keep(b.minimal(ctx, b.cfg.CeilingDuration))
	case PhaseNaive:
		b.logf("naive consumer, saturated, for %s\n", b.cfg.NaiveDuration)
		b.res.Naive, err = b.keep(b.naive(ctx, b.cfg.NaiveDuration))
	case PhaseLatency:
		err = b.latency(ctx)
	case PhaseRuntime:
		b.logf("worker.Consumer with a no-op handler against %d × raw receive/delete, %d messages each\n", b.cfg.RawConcurrency, b.cfg.RuntimeMessages)
		var rt RuntimeResult
		rt, err = b.runtimeBench(ctx)
		b.res.Runtime = &rt
		b.logf("runtime: worker.Consumer %.0f msg/s, raw %.0f msg/s (%.2f)\n", rt.ConsumerRate, rt.RawRate, rt.Ratio())
	case PhaseSoak:
		err = b.soak(ctx)
	case PhaseLedger:
		err = b.ledger(ctx)
	}
	return err
}

func (b *Bench) runPipeline(ctx context.Context, r pipelineRun) (*RunResult, error) {
	return b.keep(b.pipeline(ctx, r))
}

// keep logs a run's summary and returns it (even with an error, for the record).
func (b *Bench) keep(res RunResult, err error) (*RunResult, error) {
	res.OrdersPerDBConn = res.PerDBConn()
	line := fmt.Sprintf("%s: %d orders completed, %.0f orders/s steady (%.1f per database connection)", res.Name, res.Completed, res.Throughput, res.OrdersPerDBConn)
	if res.Latency != nil {
		line += fmt.Sprintf(", p50 %s p99 %s", ms(res.Latency.P50), ms(res.Latency.P99))
	}
	if res.Errors > 0 {
		line += fmt.Sprintf(", %d errors", res.Errors)
	}
	b.logf("%s\n", line)
	return &res, err
}

// halfRate is the latency and soak phases' offered load.
func (b *Bench) halfRate() (float64, error) {
	if b.cfg.HalfRate > 0 {
		return b.cfg.HalfRate, nil
	}
	if b.res.Max != nil && b.res.Max.Throughput > 0 {
		return b.res.Max.Throughput / 2, nil
	}
	rep, err := ReadReport(filepath.Join(b.cfg.OutDir, "bench.json"))
	var prev *Result
	if err == nil {
		prev = rep.Profile(b.net.Name)
	}
	if prev == nil || prev.Max == nil || prev.Max.Throughput == 0 {
		return 0, errors.New("no maximum rate: run the max phase first, or give the rate")
	}
	return prev.Max.Throughput / 2, nil
}

func (b *Bench) latency(ctx context.Context) error {
	rate, err := b.halfRate()
	if err != nil {
		return err
	}
	b.logf("the pipeline at %.0f orders/s for %s\n", rate, b.cfg.LatencyDuration)
	b.res.Half, err = b.runPipeline(ctx, pipelineRun{name: "half", argv: b.cfg.WorkerArgv, rate: rate, duration: b.cfg.LatencyDuration, warmup: 5 * time.Second, procEvery: time.Second})
	return err
}

func (b *Bench) soak(ctx context.Context) error {
	rate, err := b.halfRate()
	if err != nil {
		return err
	}
	b.logf("soak: the pipeline at %.0f orders/s for %s, worker RSS every 5s\n", rate, b.cfg.Soak)
	run, err := b.runPipeline(ctx, pipelineRun{name: "soak", argv: b.cfg.WorkerArgv, rate: rate, duration: b.cfg.Soak, warmup: time.Minute, procEvery: 5 * time.Second, keepRSS: true})
	if err != nil {
		return err
	}
	s := &SoakResult{Run: run}
	s.BaselineRSS, s.EndRSS = soakWindows(run.RSS, b.cfg.Soak)
	if s.BaselineRSS > 0 {
		s.Growth = float64(s.EndRSS-s.BaselineRSS) / float64(s.BaselineRSS)
	}
	b.res.Soak = s
	b.logf("soak: worker RSS %s after warm-up, %s at the end (%+.1f %%)\n", mib(s.BaselineRSS), mib(s.EndRSS), 100*s.Growth)
	return nil
}

// soakWindows returns the median RSS of the minute after the first (the
// warm-up) and of the last minute of the load.
func soakWindows(rss []RSSSample, load time.Duration) (baseline, end int64) {
	warm := min(time.Minute, load/4).Seconds()
	last := load.Seconds()
	var first, final []int64
	for _, s := range rss {
		switch {
		case s.T >= warm && s.T < 2*warm:
			first = append(first, s.RSS)
		case s.T >= last-warm && s.T <= last:
			final = append(final, s.RSS)
		}
	}
	return median(first), median(final)
}

func median(v []int64) int64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

func (b *Bench) write() error {
	dir := b.cfg.OutDir
	errs := []error{b.report.WriteJSON(filepath.Join(dir, "bench.json"))}
	f, err := os.Create(filepath.Join(dir, "bench.md"))
	if err == nil {
		errs = append(errs, b.report.WriteTables(f), f.Close())
	} else {
		errs = append(errs, err)
	}
	for _, res := range b.report.Profiles {
		if res.Max == nil || len(res.Max.Series) == 0 {
			continue
		}
		name := "bench.png"
		if res.Network != NetworkLoopback {
			name = "bench-" + res.Network + ".png"
		}
		errs = append(errs, WritePlot(filepath.Join(dir, name),
			fmt.Sprintf("orderpipe, saturated, %s network: %.0f orders/s steady (%s)", res.Network, res.Max.Throughput, res.Machine.shortString()), res.Max))
	}
	fmt.Fprintln(b.cfg.Out)
	errs = append(errs, b.report.WriteTables(b.cfg.Out))
	return errors.Join(errs...)
}

func roomySQS(cfg Config) *sqs.Client {
	conns := 4*cfg.RawConcurrency + cfg.MaxInFlight
	return sqs.NewFromConfig(cfg.Stack.AWS, func(o *sqs.Options) {
		o.HTTPClient = awshttp.NewBuildableClient().WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns, t.MaxIdleConnsPerHost = conns, conns
		})
	})
}

func (m Machine) shortString() string {
	return fmt.Sprintf("%d cores, %.0f GiB, %s", m.Cores, float64(m.MemoryMiB)/1024, m.Go)
}

func (b *Bench) logf(format string, args ...any) { fmt.Fprintf(b.cfg.Log, format, args...) }
