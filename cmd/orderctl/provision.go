package main

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

func provision(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("provision")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := c.Common.AWS(ctx)
	if err != nil {
		return err
	}
	ap, err := topology.Apply(ctx, sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg), c.Common.Topology())
	if err != nil {
		return err
	}
	b, _ := json.MarshalIndent(ap, "", "  ")
	fmt.Fprintln(c.Out, string(b))
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
