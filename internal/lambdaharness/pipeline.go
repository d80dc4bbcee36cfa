package lambdaharness

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/lambdafn"
	"github.com/orderpipe/orderpipe/topology"
)

// Environment is what a function's init phase does (cmd/lambda's main
// after its configuration): app.NewFunction, served by lambdafn's handler
// through aws-lambda-go's interface, closed at shutdown.
//
// Each environment is a process of its own in Lambda: its logger names it
// ("environment": handler-n, as Lambda gives each its log stream), and it
// gets its own cache of a DB_SECRET_ID secret.
func Environment(fc app.FunctionConfig) func(ctx context.Context) (lambda.Handler, func(), error) {
	var n atomic.Int64
	return func(ctx context.Context) (lambda.Handler, func(), error) {
		fc := fc
		if fc.App.Logger != nil {
			fc.App.Logger = fc.App.Logger.With("environment", fmt.Sprintf("%s-%d", fc.Handler, n.Add(1)))
		}
		if fc.App.Store.Secret != nil {
			fc.App.Store.Secret = fc.App.Store.Secret.Copy()
		}
		fn, err := app.NewFunction(ctx, fc)
		if err != nil {
			return nil, nil, err
		}
		return lambdafn.New(fn).Lambda(), fn.Close, nil
	}
}

// Pipeline is the three functions of a deployment, each behind its own
// event source mapping, as the Lambda variant of the stack deploys them.
type Pipeline struct {
	ESMs map[string]*ESM
}

// PipelineConfig configures StartPipeline.
type PipelineConfig struct {
	// Function is every function's configuration; Handler is set per
	// function.
	Function app.FunctionConfig
	// ESM is every mapping's configuration; SQS, QueueURL, FunctionName
	// and NewEnvironment are set per function.
	ESM Config
	// Handlers are the functions to run. Defaults to the topology's three.
	Handlers []string
}

// StartPipeline starts a function per handler of ap, each behind a mapping
// of its queue.
func StartPipeline(ctx context.Context, cfg PipelineConfig, ap topology.Applied) (*Pipeline, error) {
	hs := cfg.Handlers
	if len(hs) == 0 {
		hs = slices.Sorted(maps.Keys(ap.Queues))
	}
	p := &Pipeline{ESMs: map[string]*ESM{}}
	for _, h := range hs {
		q, ok := ap.Queues[h]
		if !ok {
			return nil, errors.Join(fmt.Errorf("lambdaharness: no queue for %q", h), p.Stop())
		}
		fc := cfg.Function
		fc.Handler = h
		ec := cfg.ESM
		ec.SQS, ec.QueueURL, ec.FunctionName = sqs.NewFromConfig(fc.App.AWS), q.URL, h
		ec.NewEnvironment = Environment(fc)
		e, err := Start(ctx, ec)
		if err != nil {
			return nil, errors.Join(err, p.Stop())
		}
		p.ESMs[h] = e
	}
	return p, nil
}

// Stop stops every mapping and shuts its environments down.
func (p *Pipeline) Stop() error {
	var errs []error
	for _, e := range p.ESMs {
		errs = append(errs, e.Stop())
	}
	return errors.Join(errs...)
}

// Stats are each function's mapping's.
func (p *Pipeline) Stats() map[string]Stats {
	out := make(map[string]Stats, len(p.ESMs))
	for h, e := range p.ESMs {
		out[h] = e.Stats()
	}
	return out
}
