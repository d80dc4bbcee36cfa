package bench

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTableAndTargets(t *testing.T) {
	r := &Result{
		Machine:  Machine{Cores: 2, MemoryMiB: 4096, Go: "go1.26"},
		Settings: Settings{MaxInFlight: 20, DBMaxConns: 10},
		Max:      &RunResult{Throughput: 400, Latency: &Latencies{P50: 900, P95: 1500, P99: 2100}, DBConns: ConnPeak{Total: 10, Active: 9}, Worker: &ProcUsage{CPUCores: 0.5, PeakRSS: 40 << 20}},
		Ceiling:  &RunResult{Throughput: 450},
		Naive:    &RunResult{Throughput: 100},
		Half:     &RunResult{Offered: 200, Throughput: 199, Latency: &Latencies{P50: 20, P95: 60, P99: 300}},
		Runtime:  &RuntimeResult{Messages: 50000, RawConcurrency: 8, RawRate: 4000, ConsumerMaxInFlight: 20, ConsumerRate: 3000},
	}
	r.evaluate()
	var unmet []string
	for _, t := range r.Unmet() {
		unmet = append(unmet, t.Name)
	}
	if got, want := strings.Join(unmet, ";"), "pipeline / naive;p99 at half the maximum rate (ms)"; got != want {
		t.Errorf("unmet = %q, want %q", got, want)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	table := b.String()
	for _, want := range []string{
		"| pipeline, max sustained (bin/worker, saturated) | 400 | 900 ms | 1.50 s | 2.10 s | 10 (9) | 40.0 | 0.50 cores | 40 MiB |  |",
		"| **pipeline / ceiling** | **0.89** |",
		"≥ 0.8 ✅ met",
		"| **pipeline / naive** | **4.00** | | | | | | | | ≥ 5 ❌ not met |",
		"< 250 ❌ not met",
		"| worker.Consumer alone, no-op handler, 50000-message backlog (MaxInFlight 20) | 3000 msg/s |",
		"2 cores, 4.0 GiB memory, go1.26",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
}

// TestCostTableAndTargets: the cost per order is printed for every run
// that measured it, each exchange a count or "—" where not counted, and
// the goals are judged on the saturated pipeline's.
func TestCostTableAndTargets(t *testing.T) {
	cost := func(tx, rt, handlers, pg, machine float64) *OrderCost {
		return &OrderCost{Transactions: tx, RoundTrips: rt,
			CPU: []PartCost{{costHandlers, handlers}, {costPostgres, pg}, {costMachine, machine}}}
	}
	per := func(v float64) *float64 { return &v }
	maxCost := cost(4.4, 4.4, 0.9, 1.1, 3.5)
	maxCost.SQSCalls, maxCost.SNSCalls, maxCost.RedisCommands, maxCost.SMTPCommands = per(2.25), per(0), per(9.5), per(5)
	maxCost.RedisRoundTrips = per(3.1)
	minimalCost := cost(3, 3, 0.2, 0.5, 1.0)
	minimalCost.RedisCommands = per(0.01)
	r := &Result{
		Max:     &RunResult{Throughput: 300, Cost: maxCost},
		Ceiling: &RunResult{Throughput: 320, Cost: cost(3.1, 3.1, 0.6, 1.0, 2.5)},
		Minimal: &RunResult{Throughput: 1200, Cost: minimalCost},
	}
	r.evaluate()
	var unmet []string
	for _, t := range r.Unmet() {
		unmet = append(unmet, t.Name)
	}
	if got, want := strings.Join(unmet, ";"), "pipeline / minimal replay;transactions per order through the proxy;worker CPU per order (ms)"; got != want {
		t.Errorf("unmet = %q, want %q", got, want)
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| **pipeline / minimal replay** | **0.25** | | | | | | | | ≥ 0.3 ❌ not met |",
		"| run | transactions | round trips | SQS calls | SNS calls | Redis round trips (commands) | SMTP commands | handlers' process CPU | PostgreSQL CPU | machine CPU |",
		"| pipeline, max | 4.40 | 4.40 | 2.25 | 0.00 | 3.10 (9.50) | 5.00 | 0.90 ms | 1.10 ms | 3.50 ms |",
		"| ceiling | 3.10 | 3.10 | — | — | — (—) | — | 0.60 ms | 1.00 ms | 2.50 ms |",
		"| minimal replay | 3.00 | 3.00 | — | — | — (0.01) | — | 0.20 ms | 0.50 ms | 1.00 ms |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// TestCostJSONTellsUncountedFromZero: a count of 0 is written, one not
// counted is left out, and both read back as they were.
func TestCostJSONTellsUncountedFromZero(t *testing.T) {
	zero, five := 0.0, 5.0
	in := OrderCost{RoundTrips: 4, SQSCalls: &five, SNSCalls: &zero, Exchanges: map[string]float64{"SQS ReceiveMessage": 5}}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"sqs_calls":5`, `"sns_calls":0`, `"exchanges":{"SQS ReceiveMessage":5}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("%s lacks %s", b, want)
		}
	}
	for _, absent := range []string{"redis_commands", "smtp_commands"} {
		if strings.Contains(string(b), absent) {
			t.Errorf("%s has %s, which was not counted", b, absent)
		}
	}
	var out OrderCost
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(in, out); diff != "" {
		t.Errorf("read back (-wrote +read):\n%s", diff)
	}
}
