package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/orderpipe/orderpipe/internal/bench"
)

// loadgen publishes generated orders at a target rate: promotion traffic
// for the worker, with a live rate on a terminal.
func loadgen(ctx context.Context, c *cli, args []string) error {
	fs := newFlags("loadgen")
	rate := fs.Float64("rate", 0, "target orders per second; 0 publishes as fast as the endpoint takes them")
	count := fs.Int("count", 0, "stop after N orders")
	duration := fs.Duration("duration", 0, "stop after this long (e.g. 60s)")
	concurrency := fs.Int("concurrency", bench.LoadConcurrencyDefault, "PublishBatch calls in flight")
	seed := fs.Uint64("seed", uint64(time.Now().UnixNano()), "seed of the order generator")
	domain := fs.String("domain", "example.com", "customers' email domain")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *count <= 0 && *duration <= 0 {
		return errors.New("give --count N or --duration D (or both)")
	}
	pub, err := c.Publisher(ctx)
	if err != nil {
		return err
	}
	prog := bench.NewProgress(os.Stderr, "loadgen", "orders", *count, 5*time.Second)
	res, err := bench.Load(ctx, bench.LoadConfig{
		Rate: *rate, Count: *count, Duration: *duration, Concurrency: *concurrency,
		Generator: bench.NewGenerator(*seed, *domain), Publisher: pub, Progress: prog,
	})
	prog.Finish()
	fmt.Fprintf(c.Out, "published %d orders in %s (%.0f/s)", res.Published, res.Elapsed.Round(time.Millisecond), res.Rate())
	if res.Failed > 0 {
		fmt.Fprintf(c.Out, "; %d failed", res.Failed)
	}
	fmt.Fprintln(c.Out)
	if errors.Is(err, context.Canceled) {
		return nil // interrupted: what was published is reported
	}
	return err
}
