// Command orderctl is the operator's tool: provision the topology, migrate
// and seed the database, publish orders, and report what the pipeline did.
// Configuration comes from the same environment variables as the worker.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/store"
)

type command struct {
	name, usage string
	run         func(ctx context.Context, c *cli, args []string) error
}

var commands = []command{
	{"provision", "create or converge the SNS topic, the queues, their DLQs and the subscriptions", provision},
	{"migrate", "apply the database migrations and seed the catalog (idempotent)", migrate},
	{"reset", "empty the order tables, restore the seed catalog and purge the queues (demo and tests only)", reset},
	{"publish", "publish orders: --sample N, --file FILE (JSON lines) or JSON lines on stdin", publish},
	{"product", "change a product's price (cents), stock or name: SKU [--price N] [--stock N] [--name S]", product},
	{"drill", "failover drill: promote a standby, restart PostgreSQL and PgBouncer, stop Redis, under load; prints a table", drillCmd},
	{"loadgen", "publish generated orders at a target rate: [--rate N] --count N | --duration D", loadgen},
	{"bench", "benchmark the pipeline on the local stack: max rate, database ceiling, naive consumer, latency, runtime", benchCmd},
	{"dlq", "dead letters: list [--queue H] [--limit N], show ID [--queue H], redrive [--queue H] (--id ID | --reason R | --all) [--timeout D]", dlqCmd},
	{"report", "print what the pipeline did (--json for one JSON object)", report},
	{"wait", "wait until N orders are fully handled and the queues are empty, then report", wait},
}

// cli is what every subcommand gets: configuration and output.
type cli struct {
	common env.Common
	out    io.Writer
	log    *slog.Logger
}

func main() {
	var e env.Env
	c := &cli{common: env.LoadCommon(&e), out: os.Stdout, log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	store.RouteRedisLog(c.log)
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage(&e)
		os.Exit(2)
	}
	if err := e.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "orderctl:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, cmd := range commands {
		if cmd.name == os.Args[1] {
			if err := cmd.run(ctx, c, os.Args[2:]); err != nil {
				if !errors.Is(err, flag.ErrHelp) {
					fmt.Fprintf(os.Stderr, "orderctl %s: %v\n", cmd.name, err)
				}
				os.Exit(1)
			}
			return
		}
	}
	fmt.Fprintf(os.Stderr, "orderctl: unknown command %q\n", os.Args[1])
	usage(&e)
	os.Exit(2)
}

func usage(e *env.Env) {
	fmt.Fprintln(os.Stderr, "usage: orderctl COMMAND [flags]\n\nCommands:")
	for _, c := range commands {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", c.name, c.usage)
	}
	fmt.Fprintln(os.Stderr, "\nEnvironment variables:")
	e.Usage(os.Stderr)
}

func newFlags(name string) *flag.FlagSet {
	return flag.NewFlagSet("orderctl "+name, flag.ContinueOnError)
}
