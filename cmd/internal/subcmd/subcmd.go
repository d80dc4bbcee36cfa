// Package subcmd is the plumbing orderctl and orderbench share: a program of
// subcommands that read the worker's environment variables (env.Common),
// with `-h`, `--version`, the signal context and the exit codes, and the
// topology lookups both need to publish.
package subcmd

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

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/cmd/internal/buildinfo"
	"github.com/orderpipe/orderpipe/cmd/internal/env"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/tracing"
)

// Base is what every subcommand gets: the configuration shared with the
// worker, and where to write. Programs embed it in their own type.
type Base struct {
	Common env.Common
	Out    io.Writer
	Log    *slog.Logger
	// TracerProvider traces what Publisher publishes when the OTEL_*
	// variables turn tracing on (nil otherwise): each order a trace that
	// the worker continues.
	TracerProvider trace.TracerProvider
}

// Command is one subcommand of a program whose commands take a C.
type Command[C any] struct {
	Name, Usage string
	Run         func(ctx context.Context, c C, args []string) error
}

// Program is a command of subcommands: `NAME COMMAND [flags]`.
type Program[C any] struct {
	// Name is the command's name, in usage and error messages.
	Name string
	// Version is the version stamped at build time (main.version); empty,
	// `--version` prints the module version from the build information.
	Version  string
	Commands []Command[C]
	// New builds what the commands take from the Base.
	New func(Base) C
}

// Main runs the subcommand os.Args names and exits: 0 on success, 1 when
// the command failed, 2 for a usage or configuration error.
func (p Program[C]) Main() {
	os.Exit(p.run(os.Args[1:], os.Stdout, os.Stderr))
}

func (p Program[C]) run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && buildinfo.Requested(args[0]) {
		fmt.Fprint(stdout, buildinfo.String(p.Name, p.Version))
		return 0
	}
	e := env.New(nil)
	base := Base{Common: env.LoadCommon(e), Out: stdout, Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	tcfg := env.LoadTracing(e, p.Name, buildinfo.Version(p.Version))
	redisstore.RouteRedisLog(base.Log)
	tracing.RouteErrors(base.Log)
	if len(args) < 1 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		p.usage(stderr, e)
		return 2
	}
	if err := e.Err(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 2
	}
	tcfg.Logger = base.Log
	tp, stopTracing, err := tracing.Start(tcfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", p.Name, err)
		return 2
	}
	defer stopTracing() // what was published is traced to the end, within tracing.ShutdownTimeout
	base.TracerProvider = tp
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for _, cmd := range p.Commands {
		if cmd.Name != args[0] {
			continue
		}
		if err := cmd.Run(ctx, p.New(base), args[1:]); err != nil {
			if !errors.Is(err, flag.ErrHelp) {
				fmt.Fprintf(stderr, "%s %s: %v\n", p.Name, cmd.Name, err)
			}
			return 1
		}
		return 0
	}
	fmt.Fprintf(stderr, "%s: unknown command %q\n", p.Name, args[0])
	p.usage(stderr, e)
	return 2
}

func (p Program[C]) usage(w io.Writer, e *env.Env) {
	fmt.Fprintf(w, "usage: %s COMMAND [flags]\n\nCommands:\n", p.Name)
	for _, c := range p.Commands {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Usage)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "--version", "print the version and the build information")
	fmt.Fprintln(w, "\nEnvironment variables:")
	e.Usage(w)
}

// NewFlags is the flag set of `PROG NAME`: errors are returned, not fatal.
func NewFlags(prog, name string) *flag.FlagSet {
	return flag.NewFlagSet(prog+" "+name, flag.ContinueOnError)
}

// Resolve finds the topic and queues of the configured topology.
func (b Base) Resolve(ctx context.Context, cfg aws.Config) (topology.Applied, error) {
	return topology.Resolve(ctx, sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg), b.Common.Topology())
}

// Publisher publishes to the configured topology's topic.
func (b Base) Publisher(ctx context.Context) (*events.Publisher, error) {
	cfg, err := b.Common.AWS(ctx)
	if err != nil {
		return nil, err
	}
	ap, err := b.Resolve(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return events.NewPublisher(sns.NewFromConfig(cfg), events.PublisherConfig{TopicARN: ap.TopicARN, TracerProvider: b.TracerProvider})
}
