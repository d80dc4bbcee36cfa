// Package redisstore is the Redis side of orderpipe: the idempotency keys
// (Keys, handlers.KeyStore) and the product cache (ProductCache, in front of
// store.Catalog), on one Client with its own circuit breaker. Redis is never
// the last word: the database ledger is.
package redisstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
)

// Client is the worker's Redis: idempotency keys and the product cache. It is
// never the last word, only a shortcut in front of the database, so every
// call goes through one circuit breaker: after three unavailable failures in
// a row the worker stops asking for BreakerOpenFor and runs on the database
// alone, and a dead or hung Redis costs a message nothing but a database
// round trip. Unlike the database's, this breaker holds no consumer back.
type Client struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
	br      *resilience.Breaker
	metrics *metrics.Metrics
	behind  *writeBehind
}

// Config configures the Redis client.
type Config struct {
	// URL is redis://[user:password@]host:port/db (rediss:// for TLS). Required.
	URL string
	// KeyPrefix namespaces every key, so deployments (and test runs) can
	// share a server. Defaults to "orderpipe:".
	KeyPrefix string
	// Timeout bounds each call. Defaults to 500ms: Redis answers in well
	// under a millisecond, so a slower answer means trouble.
	Timeout time.Duration
	// Logger receives the breaker's state changes. Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics counts Redis errors, cache lookups and the breaker's states.
	// Defaults to a set nobody serves.
	Metrics *metrics.Metrics
	// BreakerOpenFor is how long the breaker leaves Redis alone after three
	// failures in a row. Defaults to BreakerOpenFor; tests shorten it.
	BreakerOpenFor time.Duration
	// TracerProvider, if set, traces the commands that run within a trace
	// (trace.go). Nil: no hook is installed.
	TracerProvider trace.TracerProvider
}

// Client defaults.
const (
	KeyPrefixDefault = "orderpipe:"
	TimeoutDefault   = 500 * time.Millisecond
	// BreakerOpenFor is how long the worker leaves Redis alone after it
	// failed three times in a row, before one call tries it again.
	BreakerOpenFor = 5 * time.Second
)

// redisLog routes go-redis's own log lines (a failed dial per call while
// Redis is down) to debug: the breaker already says it once per episode.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.DebugContext(ctx, "redis client: "+fmt.Sprintf(format, v...))
}

// RouteRedisLog sends go-redis's own log lines to log, at debug level. It
// is process-wide (go-redis has one logger for every client), so the
// commands call it once from main; a library must not.
func RouteRedisLog(log *slog.Logger) { redis.SetLogger(redisLog{log: log}) }

// Open returns the Redis client. Like the pool, it does not fail when
// Redis is down. ctx's values (not its cancellation) reach the breaker's
// prober, which runs until Close.
func Open(ctx context.Context, cfg Config) (*Client, error) {
	opt, err := redis.ParseURL(cfg.URL)
	if err != nil {
		// The URL may carry a password: do not echo it.
		return nil, errors.New("store: REDIS_URL is not a valid redis:// or rediss:// URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = TimeoutDefault
	}
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = KeyPrefixDefault
	}
	if cfg.BreakerOpenFor <= 0 {
		cfg.BreakerOpenFor = BreakerOpenFor
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = cfg.Timeout, cfg.Timeout, cfg.Timeout
	// No retries, no dial retries: the breaker and the database fallback are
	// the retry, and a worker must not spend a second per message on a dead
	// Redis before the breaker opens.
	opt.MaxRetries, opt.DialerRetries, opt.DialerRetryTimeout = -1, 1, time.Millisecond
	r := &Client{rdb: redis.NewClient(opt), prefix: cfg.KeyPrefix, timeout: cfg.Timeout, metrics: metrics.Or(cfg.Metrics)}
	r.rdb.AddHook(countHook{trips: r.metrics.RedisRoundTrips})
	if cfg.TracerProvider != nil {
		r.rdb.AddHook(traceHook{tracer: cfg.TracerProvider.Tracer(tracerName)})
	}
	r.br = resilience.NewBreaker(ctx, resilience.BreakerConfig{
		Name: "redis", Failures: 3, OpenFor: cfg.BreakerOpenFor, Logger: log, Metrics: r.metrics,
		Effect: "idempotency keys and product cache bypassed, the database decides alone (slower, still exactly once)",
	})
	r.behind = newWriteBehind(ctx, r)
	return r, nil
}

// Close sends the writes still queued behind (waiting at most 2 s) and
// closes the client.
func (r *Client) Close() error {
	r.behind.close()
	r.br.Close()
	if err := r.rdb.Close(); err != nil {
		return fmt.Errorf("close redis client: %w", err)
	}
	return nil
}

// Ping checks that Redis answers (for readiness reports; the worker runs without it).
func (r *Client) Ping(ctx context.Context) error {
	if err := r.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// do runs fn through the breaker. An open breaker fails at once.
func (r *Client) do(use string, fn func() error) error {
	err := r.br.Do(fn)
	if err != nil {
		r.metrics.RedisErrors.WithLabelValues(use).Inc()
		if errors.Is(err, resilience.ErrOpen) {
			return fmt.Errorf("redis skipped (%s): %w", use, ErrUnavailable)
		}
		return fmt.Errorf("redis (%s): %w", use, err)
	}
	return nil
}

// ErrUnavailable is wrapped by calls the open breaker refused.
var ErrUnavailable = errors.New("redis breaker open")

func (r *Client) key(parts ...string) string { return r.prefix + strings.Join(parts, ":") }

// Purge deletes every key under the prefix: idempotency keys and product
// entries. For `orderctl reset` (demos, tests), never for production.
func (r *Client) Purge(ctx context.Context) (int, error) {
	n := 0
	iter := r.rdb.Scan(ctx, 0, r.prefix+"*", 500).Iterator()
	var batch []string
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := r.rdb.Unlink(ctx, batch...).Err(); err != nil {
			return fmt.Errorf("redis purge %s*: %w", r.prefix, err)
		}
		n += len(batch)
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 500 {
			if err := flush(); err != nil {
				return n, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return n, fmt.Errorf("redis purge %s*: %w", r.prefix, err)
	}
	return n, flush()
}
