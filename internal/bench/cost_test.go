package bench

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/internal/testenv"
)

// TestProxyCountersCountTheBenchmarksRoundTrips: the cost's round trips
// are PgBouncer's own counters for the benchmark's database: three
// statements pipelined to one Sync are one round trip and one transaction,
// three sent one by one are three of each.
func TestProxyCountersCountTheBenchmarksRoundTrips(t *testing.T) {
	env := testenv.Open(t, "bench")
	ctx := context.Background()
	s := &Stack{ProxyURL: env.DBURL, Cfg: StackConfig{DBName: env.DBName}}
	pool := env.DB.Pool()
	before := s.readProxyCounters(ctx)
	if !before.ok {
		t.Fatalf("PgBouncer's SHOW STATS for %s not read through %s", env.DBName, testenv.ProxyDatabaseURL)
	}
	if err := pool.SendBatch(ctx, batchOf("SELECT 1", "SELECT 2", "SELECT 3")).Close(); err != nil {
		t.Fatal(err)
	}
	batched := s.readProxyCounters(ctx)
	for _, q := range []string{"SELECT 1", "SELECT 2", "SELECT 3"} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	after := s.readProxyCounters(ctx)
	if got := [4]int64{batched.queries - before.queries, batched.xacts - before.xacts, after.queries - batched.queries, after.xacts - batched.xacts}; got != [4]int64{1, 1, 3, 3} {
		t.Errorf("round trips and transactions: batched %d, %d; one by one %d, %d; want 1, 1; 3, 3", got[0], got[1], got[2], got[3])
	}
}

// batchOf is a batch of the statements.
func batchOf(sqls ...string) *pgx.Batch {
	b := &pgx.Batch{}
	for _, q := range sqls {
		b.Queue(q)
	}
	return b
}

// TestCPUProbeCountsBackendsThatExited: a backend that works and exits
// within the run is PostgreSQL's CPU, not "other": PgBouncer closes idle
// server connections and opens new ones under load, and a breakdown that
// lost their time put the database's CPU at a tenth of what it was.
func TestCPUProbeCountsBackendsThatExited(t *testing.T) {
	env := testenv.Open(t, "bench")
	ctx := context.Background()
	probe := NewCPUProbe(env.DBName, map[string]int{})
	cfg, err := pgx.ParseConfig(testenv.AdminDatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Database = env.DBName
	conn, err := pgx.ConnectConfig(ctx, cfg) // a backend of its own, straight on PostgreSQL
	if err != nil {
		t.Fatal(err)
	}
	var backend int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid() FROM (SELECT count(*) FROM generate_series(1, 5000000)) AS work").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	if err := conn.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Gone once the postmaster has reaped it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", backend)); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still there 10s after its connection closed", backend)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var pg float64
	for _, s := range probe.Stop() {
		if s.Name == partPostgres {
			pg = s.Cores * time.Since(probe.startAt).Seconds()
		}
	}
	if pg < 0.1 {
		t.Errorf("the exited backend's CPU counted for the database: %.3f s, want at least 0.1 s (5 million rows counted)", pg)
	}
}
