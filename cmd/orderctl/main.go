// Command orderctl is the operator's tool: provision the topology, migrate
// and seed the database, publish orders, read and redrive dead letters, and
// report what the pipeline did. Configuration comes from the same
// environment variables as the worker. It ships in the image with the
// worker; the benchmark, the load generator and the failover drill are
// cmd/orderbench, which does not.
package main

import (
	"flag"

	"github.com/orderpipe/orderpipe/cmd/internal/subcmd"
)

// version is stamped by the build: -ldflags "-X main.version=...".
var version string

// cli is what every subcommand gets: configuration and output.
type cli struct{ subcmd.Base }

var commands = []subcmd.Command[*cli]{
	{Name: "provision", Usage: "create or converge the SNS topic, the queues, their DLQs and the subscriptions; --check reports drift and changes nothing", Run: provision},
	{Name: "migrate", Usage: "apply the database migrations and seed the catalog (idempotent)", Run: migrate},
	{Name: "reset", Usage: "empty the order tables, restore the seed catalog and purge the queues (demo and tests only)", Run: reset},
	{Name: "publish", Usage: "publish orders: --sample N, --file FILE (JSON lines) or JSON lines on stdin", Run: publish},
	{Name: "product", Usage: "change a product's price (cents), stock or name: SKU [--price N] [--stock N] [--name S]", Run: product},
	{Name: "dlq", Usage: "dead letters: list [--queue H] [--limit N], show ID [--queue H], redrive [--queue H] (--id ID | --reason R | --all) [--timeout D]", Run: dlqCmd},
	{Name: "report", Usage: "print what the pipeline did (--json for one JSON object)", Run: report},
	{Name: "maintain", Usage: "run the retention maintenance once now, as a worker would (--force even if not due; --json)", Run: maintainCmd},
	{Name: "wait", Usage: "wait until N orders are fully handled and the queues are empty, then report", Run: wait},
	{Name: "trace", Usage: "where an order's trace and log lines are: [--log-group NAME] ORDER_ID", Run: traceCmd},
}

func main() {
	subcmd.Program[*cli]{
		Name: "orderctl", Version: version, Commands: commands,
		New: func(b subcmd.Base) *cli { return &cli{b} },
	}.Main()
}

func newFlags(name string) *flag.FlagSet { return subcmd.NewFlags("orderctl", name) }
