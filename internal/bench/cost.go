package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// OrderCost is what one order cost a run: exchanges with the database
// through the proxy, and CPU by part of the machine.
type OrderCost struct {
	// Transactions and RoundTrips are PgBouncer's total_xact_count and
	// total_query_count for the benchmark's database over the run, per
	// completed order. PgBouncer counts a query when the server reports
	// ready for the next one: a batch of statements pipelined to one Sync
	// is one, so RoundTrips is the exchanges that each hold a pooled
	// connection for a network round trip. Everything the run's processes
	// did through the proxy is in them: the relay's polls, the breakers'
	// probes, the readiness checks. Both are 0 when the proxy's statistics
	// could not be read (a run straight on PostgreSQL).
	Transactions float64 `json:"proxy_transactions"`
	RoundTrips   float64 `json:"proxy_round_trips"`
	// CPU is milliseconds of CPU per completed order by part (worker,
	// PostgreSQL, the machine), over the whole run from the first publish to
	// the last commit.
	CPU []PartCost `json:"cpu_ms"`
}

// PartCost is one part's CPU per order.
type PartCost struct {
	Name string  `json:"name"`
	MS   float64 `json:"ms"`
}

// Parts a cost names, in the table's order. The handlers run in the worker
// process in the pipeline and in the benchmark's own in the ceiling and the
// minimal replay.
const (
	costHandlers = "handlers' process"
	costPostgres = "PostgreSQL"
	costMachine  = "machine"
)

// CPUms returns the part's milliseconds per order, or 0.
func (c *OrderCost) CPUms(name string) float64 {
	for _, p := range c.CPU {
		if p.Name == name {
			return p.MS
		}
	}
	return 0
}

// proxyCounters are PgBouncer's cumulative counters for one database.
type proxyCounters struct {
	xacts, queries int64
	ok             bool
}

// readProxyCounters reads PgBouncer's SHOW STATS for the benchmark's database
// through its admin console (the proxy's host and port, database
// "pgbouncer", the simple protocol it requires). ok is false, with no
// error, when the proxy is not PgBouncer or refuses the console: the cost
// is then measured without round trips.
func (s *Stack) readProxyCounters(ctx context.Context) proxyCounters {
	cc, err := pgx.ParseConfig(s.ProxyURL)
	if err != nil {
		return proxyCounters{}
	}
	cc.Database = "pgbouncer"
	cc.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	cc.ConnectTimeout = 5 * time.Second
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return proxyCounters{}
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	rows, err := conn.Query(ctx, "SHOW STATS")
	if err != nil {
		return proxyCounters{}
	}
	defer rows.Close()
	var (
		db      string
		c       proxyCounters
		skipped any
	)
	dest := make([]any, len(rows.FieldDescriptions()))
	for i, f := range rows.FieldDescriptions() {
		switch f.Name {
		case "database":
			dest[i] = &db
		case "total_xact_count":
			dest[i] = &c.xacts
		case "total_query_count":
			dest[i] = &c.queries
		default:
			dest[i] = &skipped
		}
	}
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return proxyCounters{}
		}
		if db == s.Cfg.DBName {
			c.ok = true
			return c
		}
	}
	return proxyCounters{}
}

// costMeter measures a run's cost per order: the proxy's counters and the
// CPU probe, from start to stop.
type costMeter struct {
	s      *Stack
	before proxyCounters
	cpu    *CPUProbe
	start  time.Time
}

func (b *Bench) startCost(ctx context.Context, handlersPID int) *costMeter {
	return &costMeter{s: b.s, before: b.s.readProxyCounters(ctx), cpu: b.cpuProbe(handlersPID), start: time.Now()}
}

// stop ends the measurement: the run's CPU shares (for its breakdown) and
// its cost per order over completed orders.
func (m *costMeter) stop(ctx context.Context, completed func() int) ([]CPUShare, *OrderCost) {
	shares := m.cpu.Stop()
	wall := time.Since(m.start).Seconds()
	after := m.s.readProxyCounters(ctx)
	n := completed()
	if n == 0 {
		return shares, nil
	}
	c := &OrderCost{}
	if m.before.ok && after.ok {
		c.Transactions = float64(after.xacts-m.before.xacts) / float64(n)
		c.RoundTrips = float64(after.queries-m.before.queries) / float64(n)
	}
	perOrder := func(cores float64) float64 { return cores * wall * 1000 / float64(n) }
	var handlers, pg, machine float64
	for _, sh := range shares {
		switch sh.Name {
		case partWorker:
			handlers += sh.Cores
		case partBench:
			if m.cpu.pids[partWorker] == 0 { // the handlers run in the benchmark's process
				handlers += sh.Cores
			}
		case partPostgres, partPGShared:
			pg += sh.Cores
		case partMachineAll:
			machine = sh.Cores
		}
	}
	c.CPU = []PartCost{{costHandlers, perOrder(handlers)}, {costPostgres, perOrder(pg)}, {costMachine, perOrder(machine)}}
	return shares, c
}

// namedRun is a run with its name in the tables.
type namedRun struct {
	name string
	run  *RunResult
}

// costRuns are the runs whose cost the table shows, in its order.
func (r *Result) costRuns() []namedRun {
	all := []namedRun{{"pipeline, max", r.Max}, {"ceiling", r.Ceiling}, {"minimal replay", r.Minimal}, {"naive", r.Naive}, {"pipeline, half the max", r.Half}}
	return slices.DeleteFunc(all, func(x namedRun) bool { return x.run == nil || x.run.Cost == nil })
}

// writeCost writes the cost table: per completed order, the exchanges with
// the database through the proxy and the CPU of each part.
func (r *Result) writeCost(b *strings.Builder) {
	runs := r.costRuns()
	if len(runs) == 0 {
		return
	}
	b.WriteString("\nCost per completed order (PgBouncer's counters for the benchmark's database; CPU from the run's first publish to its last commit):\n\n")
	b.WriteString("| run | transactions | round trips | handlers' process CPU | PostgreSQL CPU | machine CPU |\n|---|--:|--:|--:|--:|--:|\n")
	for _, x := range runs {
		c := x.run.Cost
		fmt.Fprintf(b, "| %s | %.2f | %.2f | %.2f ms | %.2f ms | %.2f ms |\n", x.name, c.Transactions, c.RoundTrips,
			c.CPUms(costHandlers), c.CPUms(costPostgres), c.CPUms(costMachine))
	}
}
