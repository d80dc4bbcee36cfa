package main

import (
	"context"
	"flag"
	"strings"

	"github.com/orderpipe/orderpipe/cmd/internal/workerenv"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/bench"
)

// lambdaFlags registers the lambda phase's flags in fs.
func lambdaFlags(fs *flag.FlagSet, c *bench.LambdaConfig) {
	fs.DurationVar(&c.Duration, "lambda", bench.LambdaDurationDefault, "load of the lambda phase: the three handlers as functions (cmd/lambda's configuration) behind lambdaharness's event source mappings, saturated like the max run")
	fs.IntVar(&c.Concurrency, "lambda-concurrency", bench.LambdaConcurrencyDefault, "the lambda phase's maximum concurrency per function (execution environments per event source mapping; 2 to 1000)")
	fs.IntVar(&c.BatchSize, "lambda-batch", bench.LambdaBatchSizeDefault, "the lambda phase's batch size per invocation (1 to 10)")
	fs.IntVar(&c.Conns, "lambda-conns", bench.LambdaConnsDefault, "the lambda phase's database connections per execution environment (its DB_MAX_CONNS)")
	fs.DurationVar(&c.Timeout, "lambda-timeout", bench.LambdaTimeoutDefault, "the lambda phase's function timeout")
}

// lambdaFunction is a function's configuration from environ, read and
// checked as cmd/lambda reads and checks its own.
func lambdaFunction(ctx context.Context, environ []string) (app.FunctionConfig, error) {
	vars := make(map[string]string, len(environ))
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		vars[k] = v
	}
	f := workerenv.LoadFunction(func(name string) (string, bool) { v, ok := vars[name]; return v, ok })
	if err := f.Check(ctx); err != nil {
		return app.FunctionConfig{}, err
	}
	return f.App(), nil
}
