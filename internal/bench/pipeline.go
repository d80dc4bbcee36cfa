package bench

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// RunResult is one measured run.
type RunResult struct {
	Name string `json:"name"`
	// Offered is the target rate in orders per second; 0 when the load
	// saturated the pipeline (a bounded backlog in every queue).
	Offered   float64 `json:"offered_rate"`
	Published int     `json:"published"`
	Completed int     `json:"completed"`
	// Throughput is the steady-state completion rate, orders per second
	// through all three handlers (SteadyRate).
	Throughput float64 `json:"throughput"`
	// Overall is completions over the time from the first publish to the
	// last completion.
	Overall float64    `json:"overall_rate"`
	Latency *Latencies `json:"latency,omitempty"`
	DBConns ConnPeak   `json:"db_connections"`
	Worker  *ProcUsage `json:"worker,omitempty"`
	Errors  int        `json:"errors,omitempty"`
	Elapsed float64    `json:"elapsed_s"`
	Series  []Point    `json:"series,omitempty"`
	// CPU is where the machine's CPU went during the run.
	CPU []CPUShare  `json:"cpu,omitempty"`
	RSS []RSSSample `json:"rss,omitempty"`
	// OrdersPerDBConn is Throughput over the peak of database connections
	// (server connections on PostgreSQL): what each connection of a
	// proxied pool carries.
	OrdersPerDBConn float64 `json:"orders_per_s_per_db_conn"`
	// Backlog is each handler's mean backlog while the load saturated the
	// run (visible messages in its queue; orders waiting in its channel
	// for the ceiling): the handler whose backlog sits at the limit is the
	// one that bounds the run, the others keep up.
	Backlog map[string]float64 `json:"mean_backlog,omitempty"`
	// Cost is what a completed order cost the run: round trips through
	// the proxy and CPU by part.
	Cost *OrderCost `json:"cost_per_order,omitempty"`
}

// PerDBConn is the throughput per database connection at the run's peak.
func (res *RunResult) PerDBConn() float64 {
	if res.DBConns.Total == 0 {
		return 0
	}
	return res.Throughput / float64(res.DBConns.Total)
}

// RSSSample is the worker's resident memory at a time of a run.
type RSSSample struct {
	T   float64 `json:"t_s"`
	RSS int64   `json:"rss_bytes"`
}

// pipelineRun is a run of the whole pipeline with a worker process.
type pipelineRun struct {
	name string
	argv []string // the worker command
	// rate is the offered load; 0 saturates the pipeline with a backlog of
	// Config.Backlog messages per queue.
	rate     float64
	duration time.Duration
	// warmup leaves the orders published in the first warmup out of the
	// latency figures (connections opening, caches filling).
	warmup    time.Duration
	series    bool
	procEvery time.Duration
	keepRSS   bool
}

// pipeline resets the stack, starts a worker process, loads it, waits until
// every published order went through, and measures.
func (b *Bench) pipeline(ctx context.Context, r pipelineRun) (RunResult, error) {
	res := RunResult{Name: r.name, Offered: r.rate}
	if err := b.s.Reset(ctx); err != nil {
		return res, err
	}
	w, exchanges, err := b.startWorker(ctx, r)
	if err != nil {
		return res, err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = w.Stop(30 * time.Second)
		}
	}()
	conns := SampleConns(ctx, b.s.Admin, b.s.Cfg.DBName, 100*time.Millisecond)
	procs := SampleProc(ctx, w.PID(), r.procEvery)
	cost := b.startCost(ctx, w.PID(), exchanges)
	tr := NewTracker()
	start := time.Now()
	lr, loadErr := b.load(ctx, r, tr)
	waitErr := b.s.WaitProcessed(ctx, lr.Published, 90*time.Second, func() bool { return !w.Exited() })
	res.CPU, res.Cost = cost.stop(ctx, func() int { n, _ := b.s.Processed(ctx); return n / 3 })
	samples := procs.Stop()
	res.DBConns = conns.Stop()
	stopped = true
	if err := errors.Join(waitErr, w.Stop(30*time.Second)); err != nil {
		return res, err
	}
	if lr.Published == 0 {
		return res, fmt.Errorf("bench: %s: nothing published: %w", r.name, loadErr)
	}
	cs, err := b.s.Completions(ctx, tr)
	if err != nil {
		return res, err
	}
	res.Published, res.Completed, res.Errors = lr.Published, len(cs), lr.Failed
	res.Elapsed = time.Since(start).Seconds()
	res.fill(cs, start, r)
	res.Backlog = lr.Backlog
	u := Usage(samples)
	res.Worker = &u
	if r.keepRSS {
		for _, s := range samples {
			res.RSS = append(res.RSS, RSSSample{T: s.At.Sub(start).Seconds(), RSS: s.RSS})
		}
	}
	return res, nil
}

// startWorker starts r's worker process with a metrics listener on a port
// the system picks (the worker logs which): exchanges reads its counts for
// the cost, or is nil if it does not count them.
func (b *Bench) startWorker(ctx context.Context, r pipelineRun) (*WorkerProc, familiesFunc, error) {
	logPath := filepath.Join(b.cfg.OutDir, "worker-"+slug(r.name)+".log")
	env := Env(b.s.WorkerEnv(b.cfg.BaseEnv, b.net), map[string]string{"METRICS_ADDR": "127.0.0.1:0"})
	w, err := StartWorker(ctx, r.argv, env, logPath)
	if err != nil {
		return nil, nil, err
	}
	// A worker that counts its exchanges has counted its topology's
	// look-ups by now; one built before it did exports no such series,
	// and its zeros would be a lie.
	if addr := w.MetricsAddr(); addr != "" {
		scrape := scrapeMetrics("http://" + addr + "/metrics")
		if fams, err := scrape(ctx); err == nil && fams[awsRequestsMetric] != nil {
			return w, scrape, nil
		}
	}
	b.logf("%s: the worker does not export %s: its exchanges are not counted (rebuild it)\n", r.name, awsRequestsMetric)
	return w, nil, nil
}

func (b *Bench) load(ctx context.Context, r pipelineRun, tr *Tracker) (LoadResult, error) {
	prog := NewProgress(b.cfg.Log, r.name, "orders", 0, 10*time.Second)
	defer prog.Finish()
	lc := LoadConfig{
		Rate: r.rate, Duration: r.duration, Generator: b.gen, Publisher: b.s.Publisher,
		OnPublished: tr.Record, Progress: prog,
	}
	if r.rate == 0 {
		gate := NewBacklogGate(ctx, b.s.SQS, b.cfg.Backlog, b.queueURLs()...)
		lc.Gate = gate
		lr, err := Load(ctx, lc)
		gate.Stop()
		lr.Backlog = map[string]float64{}
		for url, depth := range gate.MeanDepths() {
			for _, q := range b.s.Applied.Queues {
				if q.URL == url {
					lr.Backlog[q.Handler] = depth
				}
			}
		}
		return lr, err
	}
	return Load(ctx, lc)
}

func (res *RunResult) fill(cs []Completion, start time.Time, r pipelineRun) {
	done := make([]time.Time, len(cs))
	var measured []Completion
	for i, c := range cs {
		done[i] = c.Done
		if c.Published.Sub(start) >= r.warmup {
			measured = append(measured, c)
		}
	}
	res.Throughput, res.Overall = SteadyRate(done), OverallRate(cs)
	l := LatencyOf(measured)
	res.Latency = &l
	if r.series {
		res.Series = Series(cs, start, time.Second)
	}
}

// cpuProbe starts a CPU breakdown; worker is the worker's pid, or 0 when
// the run has none (its handlers run in the bench process).
func (b *Bench) cpuProbe(worker int) *CPUProbe {
	pids := StackPIDs(b.cfg.StateDir)
	if worker > 0 {
		pids[partWorker] = worker
	}
	return NewCPUProbe(b.s.Cfg.DBName, pids)
}

func (b *Bench) queueURLs() []string {
	var urls []string
	for _, q := range b.s.Applied.Queues {
		urls = append(urls, q.URL)
	}
	return urls
}

func slug(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, strings.ToLower(s))
}
