package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// OrderCost is what one order cost a run: its network exchanges (with the
// database through the proxy, SQS, SNS, Redis, SMTP), and CPU by part of
// the machine.
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
	// SQSCalls and SNSCalls are the AWS requests (every attempt, retries
	// included: what AWS bills) and SMTPCommands the SMTP commands (each
	// a round trip) that the handlers' process made over the run, per
	// completed order, from its own counters (orderpipe_aws_requests_total,
	// orderpipe_smtp_commands_total): the worker's /metrics in a pipeline
	// run, the benchmark's process's in the ceiling and the naive run
	// (their handlers run in it; the benchmark's own publishes and queue
	// polls are not counted). Nil (absent, "—" in the table) where not
	// counted: a run whose handlers count nothing (the minimal replay, the
	// Lambda shape), or metrics that could not be read.
	SQSCalls     *float64 `json:"sqs_calls,omitempty"`
	SNSCalls     *float64 `json:"sns_calls,omitempty"`
	SMTPCommands *float64 `json:"smtp_commands,omitempty"`
	// RedisCommands is the Redis server's total_commands_processed over
	// the run, per completed order: everything the server did, whoever
	// asked (the benchmark's two INFO reads are in it, and anything else
	// using the server meanwhile). Nil when INFO could not be read.
	RedisCommands *float64 `json:"redis_commands,omitempty"`
	// RedisRoundTrips is the handlers' process's own count of its Redis
	// round trips (orderpipe_redis_round_trips_total: a command or a
	// pipeline is one), per completed order; nil where not counted, like
	// SQSCalls. A script's inner commands are in RedisCommands, not here.
	RedisRoundTrips *float64 `json:"redis_round_trips,omitempty"`
	// Exchanges breaks SQSCalls, SNSCalls and SMTPCommands down by
	// operation and command, per completed order ("SQS ReceiveMessage",
	// "SMTP RCPT"), to tell which one grew.
	Exchanges map[string]float64 `json:"exchanges,omitempty"`
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

// costMeter measures a run's cost per order: the proxy's counters, the
// handlers' process's exchanges, Redis's command count and the CPU probe,
// from start to stop.
type costMeter struct {
	s           *Stack
	before      proxyCounters
	exchanges   familiesFunc // nil: the run's exchanges are not counted
	exchBefore  exchangeCounts
	redis       *redisCounter
	redisBefore int64
	redisOK     bool
	cpu         *CPUProbe
	start       time.Time
}

// startCost starts measuring a run whose handlers run in process
// handlersPID (0: the benchmark's own) and count their exchanges in
// exchanges (nil: they count none).
func (b *Bench) startCost(ctx context.Context, handlersPID int, exchanges familiesFunc) *costMeter {
	m := &costMeter{s: b.s, before: b.s.readProxyCounters(ctx), exchanges: exchanges, redis: openRedisCounter(b.s.Cfg.RedisURL)}
	m.exchBefore = readExchanges(ctx, exchanges)
	m.redisBefore, m.redisOK = m.redis.commands(ctx)
	m.cpu, m.start = b.cpuProbe(handlersPID), time.Now()
	return m
}

// stop ends the measurement: the run's CPU shares (for its breakdown) and
// its cost per order over completed orders.
func (m *costMeter) stop(ctx context.Context, completed func() int) ([]CPUShare, *OrderCost) {
	shares := m.cpu.Stop()
	wall := time.Since(m.start).Seconds()
	after := m.s.readProxyCounters(ctx)
	exchAfter := readExchanges(ctx, m.exchanges)
	redisAfter, redisOK := m.redis.commands(ctx)
	m.redis.close()
	n := completed()
	if n == 0 {
		return shares, nil
	}
	c := &OrderCost{}
	if m.before.ok && after.ok {
		c.Transactions = float64(after.xacts-m.before.xacts) / float64(n)
		c.RoundTrips = float64(after.queries-m.before.queries) / float64(n)
	}
	c.setExchanges(m.exchBefore, exchAfter, n)
	if m.redisOK && redisOK {
		v := float64(redisAfter-m.redisBefore) / float64(n)
		c.RedisCommands = &v
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

// writeCost writes the cost table: per completed order, the network
// exchanges (the database's through the proxy, SQS, SNS, Redis, SMTP) and
// the CPU of each part.
func (r *Result) writeCost(b *strings.Builder) {
	runs := r.costRuns()
	if len(runs) == 0 {
		return
	}
	b.WriteString("\nCost per completed order (transactions and round trips: PgBouncer's counters for the benchmark's database; " +
		"SQS and SNS calls (every attempt) and SMTP commands: the handlers' process's own counters, the worker's /metrics " +
		"or the benchmark's process's where the handlers run in it (ceiling, naive), — where not counted; " +
		"Redis round trips: the handlers' process's own count (a command or a pipeline is one), and in brackets the commands the server processed " +
		"(total_commands_processed, whoever sent them, a script's inner commands included); " +
		"CPU from the run's first publish to its last commit):\n\n")
	b.WriteString("| run | transactions | round trips | SQS calls | SNS calls | Redis round trips (commands) | SMTP commands | handlers' process CPU | PostgreSQL CPU | machine CPU |\n" +
		"|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, x := range runs {
		c := x.run.Cost
		fmt.Fprintf(b, "| %s | %.2f | %.2f | %s | %s | %s | %s | %.2f ms | %.2f ms | %.2f ms |\n", x.name, c.Transactions, c.RoundTrips,
			counted(c.SQSCalls), counted(c.SNSCalls), counted(c.RedisRoundTrips)+" ("+counted(c.RedisCommands)+")", counted(c.SMTPCommands),
			c.CPUms(costHandlers), c.CPUms(costPostgres), c.CPUms(costMachine))
	}
}

// counted is a count per order for the table, or "—" when not counted.
func counted(v *float64) string {
	if v == nil {
		return "—"
	}
	return fmt.Sprintf("%.2f", *v)
}
