package bench

import (
	"context"
	"testing"

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
