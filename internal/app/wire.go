package app

import (
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/handlers"
	"github.com/orderpipe/orderpipe/handlers/billing"
	"github.com/orderpipe/orderpipe/handlers/inventory"
	"github.com/orderpipe/orderpipe/handlers/notification"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/worker"
)

// Deps are what the handlers run on. The worker builds them from its Config;
// the benchmark, the drill and the tests build them too and get the handlers
// exactly as the worker runs them, from the one wiring below.
type Deps struct {
	DB    *store.DB
	Redis *redisstore.Client
	// OutboxTopic is the topic (its name) inventory's compensations are
	// written for; the relay of that topic publishes them.
	OutboxTopic string
	// Catalog, if set, replaces the product cache on Redis (the benchmark's
	// ceiling reads the database directly).
	Catalog interface {
		billing.Catalog
		inventory.Catalog
		notification.Catalog
	}
	// Sender sends email; the worker's goes through the SMTP breaker.
	Sender notification.Sender
	// Claim is the email claim's timing.
	Claim        notification.ClaimRules
	Notification notification.Config
	// IdemLease, IdemRetention and ProductCacheTTL: zero takes the store's
	// defaults. ProductMemoTTL: zero keeps no product in memory.
	IdemLease, IdemRetention, ProductCacheTTL, ProductMemoTTL time.Duration
	// Retry bounds the in-process retry of a blip; zero takes the defaults.
	Retry   resilience.RetryBudget
	Metrics *metrics.Metrics
	Logger  *slog.Logger
	// TracerProvider, if set, gives every handled event a span
	// (handlers.Traced). Nil: nothing is traced.
	TracerProvider trace.TracerProvider
}

// EventFuncs returns the three handlers on their own, by name: what the
// benchmark's database ceiling drives directly.
func EventFuncs(d Deps) (map[string]handlers.EventFunc, error) {
	courier, err := notification.NewCourier(store.NewEmailClaims(d.DB), d.Sender, d.Claim, d.Logger, d.Metrics)
	if err != nil {
		return nil, err
	}
	products := d.Catalog
	if products == nil {
		products = redisstore.NewProductCache(d.Redis, store.NewCatalog(d.DB),
			redisstore.ProductCacheConfig{TTL: d.ProductCacheTTL, MemoTTL: d.ProductMemoTTL})
	}
	bill := store.NewBilling(d.DB)
	return map[string]handlers.EventFunc{
		billing.Name:      billing.New(bill, products, billing.NewCouponCache(bill, 0)).Handle,
		inventory.Name:    inventory.New(store.NewInventory(d.DB, d.OutboxTopic), products).Handle,
		notification.Name: notification.New(products, courier, d.Notification).Handle,
	}, nil
}

// Handlers returns each handler as the worker runs it, by name. The chain,
// outermost first: decode and validate the body, and settle what the
// error means (handlers.Adapt, the one place that decides); the handler's
// span, when tracing (handlers.Traced); the Redis idempotency fast path;
// the in-process retry of a blip; the handler.
func Handlers(d Deps) (map[string]worker.Handler, error) {
	d.Metrics = metrics.Or(d.Metrics)
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	fns, err := EventFuncs(d)
	if err != nil {
		return nil, fmt.Errorf("wire the handlers: %w", err)
	}
	keys := redisstore.NewKeys(d.Redis, d.IdemLease, d.IdemRetention)
	hs := make(map[string]worker.Handler, len(fns))
	for name, fn := range fns {
		hs[name] = handlers.Adapt(handlers.Traced(d.TracerProvider, name,
			handlers.Idempotent(keys, name, d.Logger, d.Metrics, handlers.Resilient(name, d.Retry, d.Metrics, fn))))
	}
	return hs, nil
}
