package redisstore

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/handlers"
)

// setCounter counts the SET commands a client sends: alone, or in pipelines
// (and those pipelines). Connection set-up commands are not SETs.
type setCounter struct{ singles, pipelines, piped atomic.Int64 }

func (h *setCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *setCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() == "set" {
			h.singles.Add(1)
		}
		return next(ctx, cmd)
	}
}

func (h *setCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		sets := 0
		for _, c := range cmds {
			if c.Name() == "set" {
				sets++
			}
		}
		if sets > 0 {
			h.pipelines.Add(1)
			h.piped.Add(int64(sets))
		}
		return next(ctx, cmds)
	}
}

func openCounted(t *testing.T) (*Client, *setCounter) {
	t.Helper()
	r := openLocal(t)
	h := &setCounter{}
	r.rdb.AddHook(h)
	return r, h
}

// TestCompletionsShareRoundTrips shows the write-behind's point: many
// handlers completing at once cost Redis a few pipelines, not a round trip
// each; and Close sends what is still queued.
func TestCompletionsShareRoundTrips(t *testing.T) {
	r, h := openCounted(t)
	keys := NewKeys(r, time.Minute, time.Hour)
	ctx := context.Background()
	const n = 300
	leases := make([]handlers.Lease, n)
	for i := range leases {
		l, err := keys.Begin(ctx, "billing", events.EventID(uuid.NewString()), fmt.Sprintf("%064d", i))
		if err != nil || l.Outcome != handlers.Acquired {
			t.Fatalf("begin: %v %v", l.Outcome, err)
		}
		leases[i] = l
	}
	singles, trips := h.singles.Load(), testutil.ToFloat64(r.metrics.RedisRoundTrips)
	if trips < n {
		t.Errorf("orderpipe_redis_round_trips_total = %v after %d begins, want at least %d", trips, n, n)
	}
	var wg sync.WaitGroup
	for _, l := range leases {
		wg.Go(func() {
			if err := keys.Complete(ctx, l); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if err := r.Close(); err != nil { // sends what is still queued
		t.Fatal(err)
	}
	if s := h.singles.Load() - singles; s != 0 {
		t.Errorf("%d completions made %d single round trips, want 0", n, s)
	}
	if p := h.pipelines.Load(); p == 0 || p > n/10 || h.piped.Load() != n {
		t.Errorf("%d completions went in %d pipelines carrying %d commands; want at most %d pipelines carrying %d", n, p, h.piped.Load(), n/10, n)
	}
	// One round trip per pipeline, and a new connection's set-up ones.
	if got := testutil.ToFloat64(r.metrics.RedisRoundTrips) - trips; got < float64(h.pipelines.Load()) || got >= n/10 {
		t.Errorf("orderpipe_redis_round_trips_total grew by %v for %d completions in %d pipelines, want one per pipeline (and connection set-ups)", got, n, h.pipelines.Load())
	}
	check := redis.NewClient(r.rdb.Options())
	defer check.Close()
	defer func() { _ = check.Del(ctx, leaseKeys(leases)...).Err() }()
	for _, l := range leases {
		if v, err := check.Get(ctx, l.Key).Result(); err != nil || v != "D|"+l.Fingerprint {
			t.Fatalf("%s = %q (%v) after Close, want done", l.Key, v, err)
		}
	}
}

// TestCompletionWithRedisGoneCostsNothing: a completion whose pipeline
// fails (Redis unreachable) is dropped without an error to the handler and
// without holding Close past its bound.
func TestCompletionWithRedisGoneCostsNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	ln, err := new(net.ListenConfig).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close() // nothing listens there now
	r, err := Open(context.Background(), Config{URL: "redis://" + addr + "/0", Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	keys := NewKeys(r, time.Minute, time.Hour)
	for i := range 50 {
		l := handlers.Lease{Key: r.key("idem", "billing", uuid.NewString()), Fingerprint: fmt.Sprintf("%064d", i)}
		if err := keys.Complete(context.Background(), l); err != nil {
			t.Fatalf("Complete with Redis gone = %v, want nil (written behind, dropped)", err)
		}
	}
	start := time.Now()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > writeBehindDrain+time.Second {
		t.Errorf("Close took %s, want at most the drain bound %s", took, writeBehindDrain)
	}
}

func leaseKeys(ls []handlers.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Key
	}
	return out
}
