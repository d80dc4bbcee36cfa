package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/internal/seed"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/store/redisstore"
)

func migrate(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("migrate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	db, err := c.openStore(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Migrate(ctx, slog.New(slog.NewTextHandler(os.Stderr, nil))); err != nil {
		return err
	}
	if err := admin.Seed(ctx, db, seed.Products, seed.Coupons); err != nil {
		return err
	}
	fmt.Fprintf(c.Out, "database migrated; catalog seeded: %d products, %d coupons\n", len(seed.Products), len(seed.Coupons))
	return nil
}

// reset empties the order tables, restores the seed catalog and purges the
// queues, the DLQs and the Redis keys under REDIS_KEY_PREFIX (idempotency
// keys, product entries): a clean slate for a demo. Never point it at production.
func reset(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("reset")
	if err := fs.Parse(args); err != nil {
		return err
	}
	r, err := c.reporter(ctx)
	if err != nil {
		return err
	}
	defer r.db.Close()
	if err := admin.Reset(ctx, r.db, seed.Products, seed.Coupons); err != nil {
		return err
	}
	for _, q := range r.ap.Queues {
		for _, url := range []string{q.URL, q.DLQURL} {
			_, err := r.sqsc.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(url)})
			var busy *sqstypes.PurgeQueueInProgress
			if err != nil && !errors.As(err, &busy) {
				return fmt.Errorf("purge %s: %w", url, err)
			}
		}
	}
	rdb, err := redisstore.Open(ctx, c.redisConfig())
	if err != nil {
		return err
	}
	defer rdb.Close()
	if _, err := rdb.Purge(ctx); err != nil {
		return err
	}
	fmt.Fprintln(c.Out, "order tables emptied, catalog restored, queues purged, Redis keys purged")
	return nil
}
