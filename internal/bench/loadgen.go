package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/orderpipe/orderpipe/events"
)

// Publisher publishes events; *events.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, evs []events.Event) (int, error)
}

// LoadConfig configures Load.
type LoadConfig struct {
	// Rate is the target in orders per second; 0 publishes as fast as the
	// endpoint takes them.
	Rate float64
	// Count stops after this many orders; 0 means no limit (Duration must be set).
	Count int
	// Duration stops after this long; 0 means no limit (Count must be set).
	Duration time.Duration
	// Concurrency is how many publish calls run at once. Defaults to 4.
	Concurrency int
	// Generator makes the orders. Required.
	Generator *Generator
	// Publisher sends them. Required.
	Publisher Publisher
	// OnPublished, if set, is called with every batch SNS accepted, its
	// events' OccurredAt set to the moment of publishing. It is called from
	// several goroutines.
	OnPublished func(evs []events.Event)
	// Progress, if set, is told how many orders were published.
	Progress Progress
	// Gate, if set, is waited on before every batch (a *BacklogGate keeps
	// the queues' backlog bounded).
	Gate Gate
}

// Gate holds the load back.
type Gate interface {
	Wait(ctx context.Context) error
}

// LoadConcurrencyDefault is how many publish calls Load runs at once.
const LoadConcurrencyDefault = 4

// Validate names the first bad field.
func (c *LoadConfig) Validate() error {
	switch {
	case c.Generator == nil:
		return errors.New("bench: LoadConfig.Generator is required")
	case c.Publisher == nil:
		return errors.New("bench: LoadConfig.Publisher is required")
	case c.Rate < 0:
		return errors.New("bench: LoadConfig.Rate must not be negative")
	case c.Count <= 0 && c.Duration <= 0:
		return errors.New("bench: LoadConfig needs a Count or a Duration")
	}
	return nil
}

// LoadResult is what Load did.
type LoadResult struct {
	Published int           `json:"published"`
	Failed    int           `json:"failed"`
	Elapsed   time.Duration `json:"elapsed_ns"`
	// Backlog is each handler's mean visible backlog while a BacklogGate
	// held the load (set by the benchmark, not by Load).
	Backlog map[string]float64 `json:"mean_backlog,omitempty"`
}

// Rate is the achieved publishing rate in orders per second.
func (r LoadResult) Rate() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Published) / r.Elapsed.Seconds()
}

// Load publishes orders at the configured rate until the count or the
// duration is reached or ctx ends. Orders are stamped with the time they are
// published, not the time they were due: when the publisher falls behind,
// it catches up as fast as it can, and the lag is not charged to the
// pipeline. A failed batch is counted and the load goes on; the error of
// the last failure is returned with the result.
func Load(ctx context.Context, cfg LoadConfig) (LoadResult, error) {
	if err := cfg.Validate(); err != nil {
		return LoadResult{}, err
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = LoadConcurrencyDefault
	}
	if cfg.Progress == nil {
		cfg.Progress = nopProgress{}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if cfg.Duration > 0 {
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	var (
		published, failed atomic.Int64
		lastErr           atomic.Pointer[error]
		wg                sync.WaitGroup
	)
	batches := make(chan int, cfg.Concurrency)
	for range cfg.Concurrency {
		wg.Go(func() {
			for n := range batches {
				evs := cfg.Generator.Orders(n, time.Now())
				got, err := cfg.Publisher.Publish(ctx, evs)
				if err != nil && ctx.Err() == nil {
					failed.Add(int64(n - got))
					err = fmt.Errorf("publish %d orders: %w", n, err)
					lastErr.Store(&err)
				}
				if err == nil && got == n {
					published.Add(int64(n))
					cfg.Progress.Add(n)
					if cfg.OnPublished != nil {
						cfg.OnPublished(evs)
					}
				}
			}
		})
	}
	start := time.Now()
	schedule(ctx, cfg.Rate, cfg.Count, cfg.Gate, batches)
	close(batches)
	wg.Wait()
	res := LoadResult{Published: int(published.Load()), Failed: int(failed.Load()), Elapsed: time.Since(start)}
	if p := lastErr.Load(); p != nil {
		return res, *p
	}
	return res, nil
}

// schedule sends batch sizes to out: at rate orders per second (0: as fast
// as out takes them), count orders in all (0: until ctx ends), each batch
// after gate (if any) lets it through.
func schedule(ctx context.Context, rate float64, count int, gate Gate, out chan<- int) {
	size := BatchSize(rate)
	start := time.Now()
	for sent := 0; count <= 0 || sent < count; {
		n := size
		if count > 0 {
			n = min(n, count-sent)
		}
		if rate > 0 {
			due := start.Add(time.Duration(float64(sent) / rate * float64(time.Second)))
			if d := time.Until(due); d > 0 && !sleepCtx(ctx, d) {
				return
			}
		}
		if gate != nil && gate.Wait(ctx) != nil {
			return
		}
		select {
		case out <- n:
			sent += n
		case <-ctx.Done():
			return
		}
	}
}

// BatchSize is how many orders go in one PublishBatch call at a rate: up to
// the SNS limit of ten, but small enough that batches leave about every 10 ms,
// so low rates are not published in bursts.
func BatchSize(rate float64) int {
	if rate <= 0 {
		return 10
	}
	return max(1, min(10, int(rate/100)))
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
