package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/store"
)

// BenchmarkEmailClaimAndRecord is the email's hot path as the worker runs
// it, through PgBouncer: a new email's claim, then its record. Besides the
// time per claim+record it reports pg-cpu-ms/op, the CPU (user+system)
// the benchmark database's server backends spent per claim+record, read
// from /proc: PostgreSQL's side of the cost, which is what issue 16 is
// about. It is left out when the server is not on this machine.
func BenchmarkEmailClaimAndRecord(b *testing.B) {
	env := testenv.Open(b, "store")
	ctx := context.Background()
	claims := store.NewEmailClaims(env.DB)
	prefix := testenv.Prefix()
	evs := make([]notification.ClaimRequest, b.N)
	for i := range evs {
		ev := placedOrder(fmt.Sprintf("%sbench-%d", prefix, i), "X")
		evs[i] = notification.ClaimRequest{Event: ev, Kind: string(ev.EventType), Recipient: "c@example.com",
			MessageID: "mid", Token: "delivery-1", TTL: time.Minute}
	}
	cpu := backendCPU(b, env.DBName)
	b.ResetTimer()
	for _, req := range evs {
		if c, err := claims.Claim(ctx, req); err != nil || c != notification.Claimed {
			b.Fatalf("claim: %v, %v", c, err)
		}
		if err := claims.Record(ctx, req.Event); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if spent, ok := cpu(); ok {
		b.ReportMetric(float64(spent.Microseconds())/1000/float64(b.N), "pg-cpu-ms/op")
	}
}

// backendCPU starts counting the CPU of database db's server backends and
// returns what they have spent since, if it could be read: ok is false
// when /proc does not have them (a server elsewhere) or a backend ended in
// between (its CPU is lost).
func backendCPU(b *testing.B, db string) func() (time.Duration, bool) {
	b.Helper()
	start, ok := backendTicks(b, db)
	return func() (time.Duration, bool) {
		end, endOK := backendTicks(b, db)
		var ticks int64
		for pid, t := range end {
			ticks += t - start[pid] // a backend started since counts from 0
		}
		for pid := range start {
			if _, alive := end[pid]; !alive {
				b.Logf("backend %d ended during the run: pg-cpu-ms/op left out", pid)
				return 0, false
			}
		}
		// USER_HZ, the unit of /proc/<pid>/stat's times, is 100 on Linux.
		return time.Duration(ticks) * 10 * time.Millisecond, ok && endOK
	}
}

// backendTicks is utime+stime of each client backend connected to db.
func backendTicks(b *testing.B, db string) (map[int]int64, bool) {
	b.Helper()
	ctx := context.Background()
	admin, err := pgx.Connect(ctx, testenv.AdminDatabaseURL)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = admin.Close(ctx) }()
	rows, err := admin.Query(ctx, `SELECT pid FROM pg_stat_activity WHERE datname = $1 AND backend_type = 'client backend'`, db)
	if err != nil {
		b.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		b.Fatal(err)
	}
	ticks := make(map[int]int64, len(pids))
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil, false
		}
		// After the command's ")": state is field 3, utime 14, stime 15.
		f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
		if len(f) < 13 {
			return nil, false
		}
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, false
		}
		ticks[pid] = utime + stime
	}
	return ticks, true
}
