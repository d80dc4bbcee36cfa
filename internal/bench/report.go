package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"
)

// Report is what one benchmark run measured, a Result per network
// profile; bench.json holds it.
type Report struct {
	Profiles []*Result `json:"profiles"`
}

// Profile returns the result of the network profile name, or nil.
func (r *Report) Profile(name string) *Result {
	for _, p := range r.Profiles {
		if p.Network == name {
			return p
		}
	}
	return nil
}

// Unmet lists the targets measured and missed, each named after its profile.
func (r *Report) Unmet() []Target {
	var out []Target
	for _, p := range r.Profiles {
		for _, t := range p.Unmet() {
			t.Name = p.Network + ": " + t.Name
			out = append(out, t)
		}
	}
	return out
}

// WriteJSON writes r to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return nil
}

// ReadReport reads a bench.json.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("bench: read %s: %w", path, err)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: decode %s: %w", path, err)
	}
	return &r, nil
}

// WriteTables writes each profile's table under a heading naming it.
func (r *Report) WriteTables(w io.Writer) error {
	for i, p := range r.Profiles {
		sep := ""
		if i > 0 {
			sep = "\n"
		}
		if _, err := fmt.Fprintf(w, "%s### Network %s\n\n", sep, p.NetworkDescription); err != nil {
			return fmt.Errorf("bench: write the table: %w", err)
		}
		if err := p.WriteTable(w); err != nil {
			return err
		}
	}
	return nil
}

// Result is everything one network profile's runs measured.
type Result struct {
	// Network is the profile (NetworkLoopback, NetworkCloud), with the
	// latency it added to each path and the line that says so.
	Network            string         `json:"network"`
	NetworkProfile     []LinkProfile  `json:"network_profile,omitempty"`
	NetworkDescription string         `json:"network_description"`
	Machine            Machine        `json:"machine"`
	StartedAt          time.Time      `json:"started_at"`
	Settings           Settings       `json:"settings"`
	Max                *RunResult     `json:"max,omitempty"`
	Ceiling            *RunResult     `json:"ceiling,omitempty"`
	Minimal            *RunResult     `json:"minimal_replay,omitempty"`
	Naive              *RunResult     `json:"naive,omitempty"`
	Half               *RunResult     `json:"half_rate,omitempty"`
	Runtime            *RuntimeResult `json:"runtime,omitempty"`
	Soak               *SoakResult    `json:"soak,omitempty"`
	Lambda             *LambdaResult  `json:"lambda,omitempty"`
	Ledger             *LedgerResult  `json:"ledger,omitempty"`
	Targets            []Target       `json:"targets"`
	Profile            *Profile       `json:"profile,omitempty"`
}

// Settings are the knobs a run used.
type Settings struct {
	MaxInFlight     int     `json:"max_in_flight"`
	DBMaxConns      int     `json:"db_max_conns"`
	Backlog         int     `json:"backlog"`
	MaxSeconds      float64 `json:"max_s"`
	CeilingSeconds  float64 `json:"ceiling_s"`
	NaiveSeconds    float64 `json:"naive_s"`
	LatencySeconds  float64 `json:"latency_s"`
	RuntimeMessages int     `json:"runtime_messages"`
}

// SoakResult is the worker's memory over a long run at half the maximum rate.
type SoakResult struct {
	Run *RunResult `json:"run"`
	// BaselineRSS is the median RSS of the first minute after the warm-up
	// minute; EndRSS the median of the last minute.
	BaselineRSS int64   `json:"baseline_rss_bytes"`
	EndRSS      int64   `json:"end_rss_bytes"`
	Growth      float64 `json:"growth"` // (End - Baseline) / Baseline
}

// Target is one goal of the issue and how the run did against it.
type Target struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Goal  string  `json:"goal"`
	// Met is nil when the run did not measure it.
	Met *bool `json:"met"`
}

// Targets evaluates the goals against what r measured.
func (r *Result) evaluate() {
	r.Targets = nil
	add := func(name, goal string, ok bool, value float64, met bool) {
		t := Target{Name: name, Goal: goal, Value: value}
		if ok {
			t.Met = &met
		}
		r.Targets = append(r.Targets, t)
	}
	pc, pcOK := r.ratio(r.Ceiling)
	add("pipeline / ceiling", "≥ 0.8", pcOK, pc, pc >= 0.8)
	pm, pmOK := r.ratio(r.Minimal)
	add("pipeline / minimal replay", "≥ 0.3", pmOK, pm, pm >= 0.3)
	pn, pnOK := r.ratio(r.Naive)
	add("pipeline / naive", "≥ 5", pnOK, pn, pn >= 5)
	if c := r.maxCost(); c != nil {
		rt := c.Transactions > 0 || c.RoundTrips > 0
		add("round trips per order through the proxy", "≤ 6", rt, c.RoundTrips, c.RoundTrips <= 6)
		add("transactions per order through the proxy", "≤ 4", rt, c.Transactions, c.Transactions <= 4)
		add("worker CPU per order (ms)", "≤ 0.8", true, c.CPUms(costHandlers), c.CPUms(costHandlers) <= 0.8)
		add("PostgreSQL CPU per order (ms)", "≤ 1.2", true, c.CPUms(costPostgres), c.CPUms(costPostgres) <= 1.2)
		add("machine CPU per order (ms)", "≤ 4", true, c.CPUms(costMachine), c.CPUms(costMachine) <= 4)
	}
	if r.Runtime != nil {
		add("worker.Consumer / emulator raw", "≥ 0.5", true, r.Runtime.Ratio(), r.Runtime.Ratio() >= 0.5)
	} else {
		add("worker.Consumer / emulator raw", "≥ 0.5", false, 0, false)
	}
	if r.Half != nil && r.Half.Latency != nil {
		add("p99 at half the maximum rate (ms)", "< 250", true, r.Half.Latency.P99, r.Half.Latency.P99 < 250)
	} else {
		add("p99 at half the maximum rate (ms)", "< 250", false, 0, false)
	}
	if r.Soak != nil {
		add("worker RSS growth over the soak", "< 10 %", true, r.Soak.Growth, r.Soak.Growth < 0.10)
	} else {
		add("worker RSS growth over the soak", "< 10 %", false, 0, false)
	}
}

// maxCost is the saturated pipeline's cost per order, if measured.
func (r *Result) maxCost() *OrderCost {
	if r.Max == nil {
		return nil
	}
	return r.Max.Cost
}

func (r *Result) ratio(base *RunResult) (float64, bool) {
	if r.Max == nil || base == nil || base.Throughput == 0 {
		return 0, false
	}
	return r.Max.Throughput / base.Throughput, true
}

// Unmet lists the targets measured and missed.
func (r *Result) Unmet() []Target {
	var out []Target
	for _, t := range r.Targets {
		if t.Met != nil && !*t.Met {
			out = append(out, t)
		}
	}
	return out
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// WriteTable writes the markdown table: one row per run, then one per
// ratio and target, and the machine underneath.
func (r *Result) WriteTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| measurement | orders/s | p50 | p95 | p99 | peak DB conns (busy) | orders/s per DB conn | worker CPU | worker peak RSS | target |\n")
	b.WriteString("|---|--:|--:|--:|--:|--:|--:|--:|--:|---|\n")
	if r.Max != nil {
		r.runRow(&b, "pipeline, max sustained (bin/worker, saturated)", r.Max, "")
	}
	r.lambdaRow(&b)
	if r.Ceiling != nil {
		r.runRow(&b, "ceiling: the handlers straight on the database", r.Ceiling, "")
	}
	if r.Minimal != nil {
		r.runRow(&b, "minimal replay: the effects' essential statements, same proxy and pool", r.Minimal, "")
	}
	if r.Naive != nil {
		r.runRow(&b, "naive consumer: 1 goroutine per queue, 1 message at a time", r.Naive, "")
	}
	if r.Half != nil {
		r.runRow(&b, fmt.Sprintf("pipeline at half the max (%.0f/s offered)", r.Half.Offered), r.Half, r.targetCell("p99 at half the maximum rate (ms)"))
	}
	if rt := r.Runtime; rt != nil {
		fmt.Fprintf(&b, "| worker.Consumer alone, no-op handler, %d-message backlog (MaxInFlight %d) | %.0f msg/s | | | | | | | | |\n", rt.Messages, rt.ConsumerMaxInFlight, rt.ConsumerRate)
		fmt.Fprintf(&b, "| emulator raw ceiling: %d × (receive 10 + batch delete) | %.0f msg/s | | | | | | | | |\n", rt.RawConcurrency, rt.RawRate)
	}
	if s := r.Soak; s != nil {
		fmt.Fprintf(&b, "| soak at %.0f/s for %s: worker RSS %s → %s | %.0f | | | %s | | | | %s | %s |\n",
			s.Run.Offered, (time.Duration(s.Run.Elapsed) * time.Second).Round(time.Minute), mib(s.BaselineRSS), mib(s.EndRSS),
			s.Run.Throughput, ms(s.Run.Latency.P99), mib(s.Run.Worker.PeakRSS), r.targetCell("worker RSS growth over the soak"))
	}
	for _, name := range []string{"pipeline / ceiling", "pipeline / minimal replay", "pipeline / naive", "worker.Consumer / emulator raw"} {
		t := r.target(name)
		if t == nil || t.Met == nil {
			continue
		}
		fmt.Fprintf(&b, "| **%s** | **%.2f** | | | | | | | | %s |\n", name, t.Value, r.targetCell(name))
	}
	fmt.Fprintf(&b, "\n%s; %d in flight per queue, %d database connections per process.\n", r.Machine, r.Settings.MaxInFlight, r.Settings.DBMaxConns)
	r.writeHandlers(&b)
	r.writeLedger(&b)
	r.writeCost(&b)
	r.writeCPU(&b)
	if _, err := io.WriteString(w, b.String()); err != nil {
		return fmt.Errorf("bench: write the table: %w", err)
	}
	return nil
}

// writeHandlers lists each handler's mean backlog in each run: the one at
// the limit bounds the run.
func (r *Result) writeHandlers(b *strings.Builder) {
	header := false
	for _, x := range []struct {
		name string
		run  *RunResult
	}{{"max", r.Max}, {"ceiling", r.Ceiling}, {"naive", r.Naive}} {
		if x.run == nil || len(x.run.Backlog) == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(b, "\nEach handler's mean backlog while saturated (limit %d; the one at the limit bounds the run):\n\n", r.Settings.Backlog)
			header = true
		}
		var parts []string
		for _, h := range []string{"billing", "inventory", "notification"} {
			parts = append(parts, fmt.Sprintf("%s %.0f", h, x.run.Backlog[h]))
		}
		fmt.Fprintf(b, "- %s: %s\n", x.name, strings.Join(parts, ", "))
	}
}

// writeCPU lists where the machine's CPU went in each run.
func (r *Result) writeCPU(b *strings.Builder) {
	runs := []struct {
		name string
		run  *RunResult
	}{{"max", r.Max}, {"ceiling", r.Ceiling}, {"minimal", r.Minimal}, {"naive", r.Naive}, {"half", r.Half}}
	header := false
	for _, x := range runs {
		if x.run == nil || len(x.run.CPU) == 0 {
			continue
		}
		if !header {
			fmt.Fprintf(b, "\nCPU used during each run, in cores (of %d):\n\n", r.Machine.Cores)
			header = true
		}
		var parts []string
		total := 0.0
		for _, c := range x.run.CPU {
			switch {
			case c.Name == partMachineAll:
				total = c.Cores
			case c.Cores >= 0.005:
				parts = append(parts, fmt.Sprintf("%s %.2f", c.Name, c.Cores))
			}
		}
		fmt.Fprintf(b, "- %s: %.2f busy; %s\n", x.name, total, strings.Join(parts, ", "))
	}
}

func (r *Result) runRow(b *strings.Builder, name string, run *RunResult, target string) {
	p50, p95, p99 := "—", "—", "—"
	if run.Latency != nil {
		p50, p95, p99 = ms(run.Latency.P50), ms(run.Latency.P95), ms(run.Latency.P99)
	}
	cpu, rss := "—", "—"
	if run.Worker != nil {
		cpu, rss = fmt.Sprintf("%.2f cores", run.Worker.CPUCores), mib(run.Worker.PeakRSS)
	}
	perConn := "—"
	if run.DBConns.Total > 0 {
		perConn = fmt.Sprintf("%.1f", run.PerDBConn())
	}
	fmt.Fprintf(b, "| %s | %.0f | %s | %s | %s | %d (%d) | %s | %s | %s | %s |\n",
		name, run.Throughput, p50, p95, p99, run.DBConns.Total, run.DBConns.Active, perConn, cpu, rss, target)
}

func (r *Result) target(name string) *Target {
	for i := range r.Targets {
		if r.Targets[i].Name == name {
			return &r.Targets[i]
		}
	}
	return nil
}

func (r *Result) targetCell(name string) string {
	t := r.target(name)
	if t == nil || t.Met == nil {
		return ""
	}
	mark := "✅ met"
	if !*t.Met {
		mark = "❌ not met"
	}
	return t.Goal + " " + mark
}

func ms(v float64) string {
	switch {
	case v >= 10_000:
		return fmt.Sprintf("%.1f s", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2f s", v/1000)
	case v >= 10:
		return fmt.Sprintf("%.0f ms", v)
	default:
		return fmt.Sprintf("%.1f ms", v)
	}
}

func mib(b int64) string {
	return fmt.Sprintf("%.0f MiB", math.Round(float64(b)/(1<<20)))
}
