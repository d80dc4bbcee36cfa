// Package metrics holds the worker's Prometheus metrics. They live on one
// registry, served by the worker at METRICS_ADDR under /metrics.
//
// Names follow Prometheus conventions: orderpipe_ prefix, _total for
// counters, base units (seconds). Labels are bounded: handler names,
// outcomes and results come from small fixed sets, never from event data.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Registry is the registry the worker serves.
var Registry = prometheus.NewRegistry()

var factory = func() prometheus.Registerer {
	Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return Registry
}()

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	factory.MustRegister(c)
	return c
}

// Idempotency layer (Redis in front of the database ledger).
var (
	// IdempotencyOutcomes counts what the Redis layer decided per message:
	// acquired (run the handler), done (known duplicate, acknowledged without
	// the database), busy (a concurrent copy holds the lease), conflict (same
	// event_id, different payload), bypass (Redis unavailable: the database
	// ledger alone decides).
	IdempotencyOutcomes = counterVec("orderpipe_idempotency_outcomes_total",
		"Decisions of the Redis idempotency layer, by handler and outcome.", "handler", "outcome")
	// RedisErrors counts failed Redis calls, by use (idempotency, cache).
	RedisErrors = counterVec("orderpipe_redis_errors_total",
		"Redis calls that failed or were skipped by the open breaker, by use.", "use")
)

// Product cache (cache-aside in Redis).
var (
	// CacheRequests counts product lookups by result: hit, miss (filled from
	// the database) or error (Redis unavailable: read from the database).
	CacheRequests = counterVec("orderpipe_product_cache_requests_total",
		"Product cache lookups per SKU, by result (hit, miss, error).", "result")
)

// Email, the one effect outside the database.
var (
	// EmailsSent counts emails the SMTP server accepted, by kind.
	EmailsSent = counterVec("orderpipe_emails_sent_total", "Emails accepted by the SMTP server, by event type.", "event_type")
	// EmailDuplicateRisk counts the times the one window for a duplicate
	// email opened: an email accepted by the SMTP server but not recorded
	// (unrecorded), and a send taken over after another worker's claim
	// expired without a record (takeover); see package notification.
	EmailDuplicateRisk = counterVec("orderpipe_email_duplicate_risk_total",
		"Emails that may have been sent twice: accepted but not recorded, or re-sent after an expired claim.", "cause")
)

// Circuit breakers (database, redis, smtp) and retries.
var (
	// BreakerState is each breaker's state: 0 closed, 1 half-open, 2 open.
	BreakerState = gaugeVec("orderpipe_breaker_state",
		"Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.", "breaker")
	// BreakerTransitions counts transitions by breaker and new state.
	BreakerTransitions = counterVec("orderpipe_breaker_transitions_total",
		"Circuit breaker transitions, by dependency and the state entered.", "breaker", "to")
	// Retries counts in-process retries of a handler after a blip, by reason.
	Retries = counterVec("orderpipe_handler_retries_total",
		"In-process retries of a handler after a transient failure, by handler and reason.", "handler", "reason")
	// PoolResets counts database pool resets after a failover signature.
	PoolResets = counterVec("orderpipe_db_pool_resets_total",
		"Times the database pool dropped its connections after a failover signature, by signature.", "reason")
)

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	factory.MustRegister(g)
	return g
}

// The consumer runtime, per handler (queue).
var (
	MessagesReceived = counterVec("orderpipe_messages_received_total",
		"Messages received from SQS, by handler.", "handler")
	MessagesProcessed = counterVec("orderpipe_messages_processed_total",
		"Messages handled successfully and deleted, by handler.", "handler")
	MessagesRetried = counterVec("orderpipe_messages_retried_total",
		"Messages handed back to the queue for a later retry, by handler.", "handler")
	MessagesDeadLettered = counterVec("orderpipe_messages_dead_lettered_total",
		"Messages moved to the DLQ at once, by handler and reason.", "handler", "reason")
	MessagesReleased = counterVec("orderpipe_messages_released_total",
		"Messages received during shutdown and handed back at once (visibility 0), by handler.", "handler")
	InFlight = gaugeVec("orderpipe_messages_in_flight",
		"Messages received and not yet settled, by handler.", "handler")
	HandlerDuration = histogramVec("orderpipe_handler_duration_seconds",
		"Time from receive to settlement of a message, by handler and outcome (ok, retry, dead_letter).",
		[]float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}, "handler", "outcome")
)

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	factory.MustRegister(h)
	return h
}

// OutboxPublished counts outbox events the relay published.
var OutboxPublished = func() prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "orderpipe_outbox_published_total",
		Help: "Events published from the transactional outbox (inventory's out-of-stock cancellations)."})
	factory.MustRegister(c)
	return c
}()

// OutboxPublishFailures counts batches the relay failed to publish; their
// rows stay in the outbox and go out on a later try.
var OutboxPublishFailures = func() prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "orderpipe_outbox_publish_failures_total",
		Help: "Outbox batches the relay failed to publish (SNS down, throttling, timeout); they are published again later."})
	factory.MustRegister(c)
	return c
}()
