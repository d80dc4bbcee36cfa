package bench

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
)

func TestLambdaResultSumsTheMappings(t *testing.T) {
	l := &LambdaResult{Run: &RunResult{Throughput: 600, Elapsed: 20, DBConns: ConnPeak{Total: 12, Active: 10}}}
	l.addStats(map[string]lambdaharness.Stats{
		"billing":      {Environments: 5, Invocations: 100, Records: 1000, Busy: 80 * time.Second},
		"inventory":    {Environments: 5, Invocations: 90, Records: 900, ItemFailures: 2, Busy: 60 * time.Second},
		"notification": {Environments: 2, Invocations: 50, Records: 500, BatchErrors: 1, Busy: 20 * time.Second},
	})
	if l.Environments != 12 || l.EnvironmentsByFunction["notification"] != 2 {
		t.Errorf("environments = %d (%v), want 12 (notification 2)", l.Environments, l.EnvironmentsByFunction)
	}
	if l.Invocations != 240 || l.Records != 2400 || l.ItemFailures != 2 || l.BatchErrors != 1 {
		t.Errorf("invocations %d, records %d, item failures %d, batch errors %d; want 240, 2400, 2, 1", l.Invocations, l.Records, l.ItemFailures, l.BatchErrors)
	}
	if l.OrdersPerEnv != 50 || l.PerEnvironment() != 50 {
		t.Errorf("orders/s per environment = %v, want 600/12 = 50", l.OrdersPerEnv)
	}
	if l.BusyEnvironments != 8 {
		t.Errorf("mean busy environments = %v, want 160s/20s = 8", l.BusyEnvironments)
	}
	if got := l.Run.PerDBConn(); got != 50 {
		t.Errorf("orders/s per database connection = %v, want 600/12 = 50", got)
	}
	if got := (&LambdaResult{Run: &RunResult{Throughput: 5}}).PerEnvironment(); got != 0 {
		t.Errorf("no environment: %v orders/s per environment, want 0", got)
	}
}

func TestLambdaRowBesideTheWorkers(t *testing.T) {
	r := &Result{
		Max: &RunResult{Throughput: 400, DBConns: ConnPeak{Total: 10, Active: 9}},
		Lambda: &LambdaResult{Concurrency: 5, BatchSize: 10, ConnsPerEnv: 2, Environments: 15,
			Run: &RunResult{Throughput: 300, Latency: &Latencies{P50: 900, P95: 1500, P99: 2100}, DBConns: ConnPeak{Total: 20, Active: 12}}},
	}
	var b strings.Builder
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(b.String(), "\n")
	if !strings.HasPrefix(lines[2], "| pipeline, max sustained") {
		t.Fatalf("the worker's line is not first:\n%s", b.String())
	}
	want := "| Lambda shape through lambdaharness (3 functions ≤ 5 environments, batch 10, 2 DB conns each, saturated): 15 environments at peak, **20.0 orders/s per environment** | 300 | 900 ms | 1.50 s | 2.10 s | 20 (12) | 15.0 | — | — |  |"
	if lines[3] != want {
		t.Errorf("the lambda line =\n%s\nwant\n%s", lines[3], want)
	}
}

func TestLambdaConfig(t *testing.T) {
	var c LambdaConfig
	c.setDefaults()
	if c.Duration != LambdaDurationDefault || c.Concurrency != 5 || c.BatchSize != 10 || c.Conns != 2 || c.Timeout != 30*time.Second {
		t.Errorf("defaults = %+v", c)
	}
	if err := c.validate(); err == nil || !strings.Contains(err.Error(), "Function") {
		t.Errorf("no Function: %v, want an error naming it", err)
	}
	c.Function = lambdaFunctionStub
	if err := c.validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	for _, bad := range []LambdaConfig{{Concurrency: 1, BatchSize: 10}, {Concurrency: 5, BatchSize: 11}} {
		bad.Function = lambdaFunctionStub
		if bad.validate() == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func lambdaFunctionStub(context.Context, []string) (app.FunctionConfig, error) {
	return app.FunctionConfig{}, nil
}
