// Command orderbench is the project's tooling, kept out of the product: the
// benchmark (`make bench`, `make soak`), the load generator and the
// failover drill (`make drill`). It reads the same environment variables as
// the worker and runs bin/worker, next to it, as its own process. The image
// does not contain it, nor the plotting and progress-bar modules it links.
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
	{Name: "bench", Usage: "benchmark the pipeline on the local stack: max rate, database ceiling, naive consumer, latency, runtime", Run: benchCmd},
	{Name: "loadgen", Usage: "publish generated orders at a target rate: [--rate N] --count N | --duration D", Run: loadgen},
	{Name: "drill", Usage: "failover drill under load: clean faults (promote a standby, restarts, outages) and the network's (hangs, latency, resets, AWS errors); prints a table", Run: drillCmd},
}

func main() {
	subcmd.Program[*cli]{
		Name: "orderbench", Version: version, Commands: commands,
		New: func(b subcmd.Base) *cli { return &cli{b} },
	}.Main()
}

func newFlags(name string) *flag.FlagSet { return subcmd.NewFlags("orderbench", name) }
