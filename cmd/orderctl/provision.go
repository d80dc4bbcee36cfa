package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

func provision(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("provision")
	check := fs.Bool("check", false, "change nothing: report how the deployed topic, queues, DLQs, redrive and queue policies and subscriptions differ from topology/topology.json, and fail if they do")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.Common.AWS(ctx)
	if err != nil {
		return err
	}
	snsc, sqsc := sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg)
	if *check {
		return checkTopology(ctx, snsc, sqsc, c.Common.Topology(), c.Out)
	}
	ap, err := topology.Apply(ctx, snsc, sqsc, c.Common.Topology())
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(ap, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the applied topology: %w", err)
	}
	fmt.Fprintln(c.Out, string(b))
	return nil
}

// checkTimeout bounds `provision --check`: a handful of read calls per queue.
const checkTimeout = time.Minute

// checkTopology prints every difference between the deployed topology and
// the declaration, and fails (orderctl exits 1) when there is one.
func checkTopology(ctx context.Context, snsc *sns.Client, sqsc *sqs.Client, top topology.Topology, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	drift, err := topology.Check(ctx, snsc, sqsc, top)
	if err != nil {
		return err
	}
	for _, d := range drift {
		fmt.Fprintln(out, "drift:", d)
	}
	if len(drift) > 0 {
		return fmt.Errorf("%d difference(s) from topology/topology.json; `orderctl provision` converges them", len(drift))
	}
	fmt.Fprintf(out, "no drift: topic %s, %d queues, their DLQs, redrive and queue policies and subscriptions match topology/topology.json\n", top.Topic, len(top.Queues))
	return nil
}

// openStore opens the pool; callers close it.
func (c *cli) openStore(ctx context.Context) (*store.DB, error) {
	cfg, err := c.Common.StoreConfig(ctx)
	if err != nil {
		return nil, err
	}
	return store.Open(ctx, cfg)
}
