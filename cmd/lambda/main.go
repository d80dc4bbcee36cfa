// Command lambda is orderpipe's AWS Lambda function, for the
// provided.al2023 runtime: built as `bootstrap` (make lambda), one binary
// for the three functions, each choosing its handler with
// ORDERPIPE_HANDLER. It reads the worker's environment variables (`lambda
// -h` lists them), builds the handler's connections once per execution
// environment, and serves the SQS event source's batches with partial batch
// responses. `lambda --version` prints the version and build information.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/orderpipe/orderpipe/cmd/internal/buildinfo"
	"github.com/orderpipe/orderpipe/cmd/internal/workerenv"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/lambdafn"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/tracing"
)

// version is stamped by the build: -ldflags "-X main.version=...".
var version string

func main() { os.Exit(lambdaMain(os.Args[1:])) }

// lambdaMain starts the function; it returns only when it cannot (1, or 2
// for a configuration it refused): lambda.Start serves until the
// environment ends.
func lambdaMain(args []string) int {
	arg := ""
	if len(args) > 0 {
		arg = args[0]
	}
	if buildinfo.Requested(arg) {
		fmt.Fprint(os.Stdout, buildinfo.String("lambda", version))
		return 0
	}
	f := workerenv.LoadFunction(os.LookupEnv)
	if arg == "-h" || arg == "--help" || arg == "help" {
		fmt.Fprintln(os.Stderr, "usage: bootstrap [--version]\n\nAn AWS Lambda function (provided.al2023) serving one handler's SQS batches.\n\nEnvironment variables:")
		f.Env.Usage(os.Stderr)
		return 0
	}
	log := slog.New(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{Level: f.Level}))
	redisstore.RouteRedisLog(log)
	tracing.RouteErrors(log)
	f.Config.App.Logger = log
	ctx := context.Background()
	if err := f.Check(ctx); err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	log.Info("configuration", append(f.Env.Effective(), "gc_percent", workerenv.TuneGC(os.LookupEnv))...)
	if err := f.ResolveSecrets(ctx); err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	f.Tracing.ServiceVersion, f.Tracing.Logger = buildinfo.Version(version), log
	tp, stopTracing, err := tracing.Start(f.Tracing)
	if err != nil {
		log.Error("bad configuration", "err", err)
		return 2
	}
	f.Config.App.TracerProvider = tp
	fn, err := app.NewFunction(ctx, f.App())
	if err != nil {
		log.Error("function failed to start", "err", err)
		stopTracing()
		return 1
	}
	// Served until the environment ends; at its shutdown (SIGTERM, sent
	// when an extension is registered, SIGKILL 500 ms later) the
	// connections close and the last spans leave, as far as they can.
	lambda.StartWithOptions(lambdafn.New(fn).Handle, lambda.WithEnableSIGTERM(fn.Close, stopTracing))
	return 0
}
