// Package metrics holds the worker's Prometheus metrics. New makes one set on
// a registry of its own: the worker serves it at METRICS_ADDR under
// /metrics, and every component gets it injected (no global registry), so
// two workers in one process (tests) count apart.
//
// Names follow Prometheus conventions: orderpipe_ prefix, _total for
// counters, base units (seconds). Labels are bounded: handler names,
// outcomes and reasons come from small fixed sets, never from event data.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/orderpipe/orderpipe/worker"
)

// Metrics is one worker's set of metrics.
type Metrics struct {
	// Registry holds them all, and the Go runtime and process collectors.
	Registry *prometheus.Registry

	// The consumer runtime, per handler (queue).
	MessagesReceived     *prometheus.CounterVec   // handler
	MessagesProcessed    *prometheus.CounterVec   // handler
	MessagesRetried      *prometheus.CounterVec   // handler
	MessagesDeadLettered *prometheus.CounterVec   // handler, reason
	MessagesReleased     *prometheus.CounterVec   // handler
	InFlight             *prometheus.GaugeVec     // handler
	HandlerDuration      *prometheus.HistogramVec // handler, outcome

	// IdempotencyOutcomes counts what the Redis layer decided per message:
	// acquired (run the handler), done (known duplicate, acknowledged
	// without the database), busy (a concurrent copy holds the lease),
	// conflict (same event_id, different payload), bypass (Redis
	// unavailable: the database ledger alone decides).
	IdempotencyOutcomes *prometheus.CounterVec // handler, outcome
	// RedisErrors counts failed Redis calls, by use (idempotency, cache).
	RedisErrors *prometheus.CounterVec // use
	// CacheRequests counts product lookups by result: hit, miss (filled
	// from the database) or error (Redis unavailable: read from the database).
	CacheRequests *prometheus.CounterVec // result

	// EmailsSent counts emails the SMTP server accepted, by kind.
	EmailsSent *prometheus.CounterVec // event_type
	// EmailDuplicateRisk counts the emails that may arrive twice:
	// accepted but not recorded (unrecorded), a send whose outcome is
	// unknown (outcome_unknown), and a send of an email whose claim ran out
	// unrecorded (takeover); see handlers/notification's Courier.
	EmailDuplicateRisk *prometheus.CounterVec // cause

	// BreakerState is each breaker's state: 0 closed, 1 half-open, 2 open.
	BreakerState *prometheus.GaugeVec // breaker
	// BreakerTransitions counts transitions by breaker and new state.
	BreakerTransitions *prometheus.CounterVec // breaker, to
	// Retries counts in-process retries of a handler after a blip.
	Retries *prometheus.CounterVec // handler, reason
	// PoolResets counts database pool resets after a failover signature.
	PoolResets *prometheus.CounterVec // reason

	// OutboxPublished counts outbox events the relay published;
	// OutboxPublishFailures the batches it failed to publish (published
	// again later).
	OutboxPublished       prometheus.Counter
	OutboxPublishFailures prometheus.Counter

	// The retention maintenance (internal/app's maintenance loop; README
	// "Retention"). MaintenanceRuns counts this process's runs by result
	// (ok, failed); MaintenanceRemoved the rows they removed, by table;
	// MaintenanceBatch each removal batch's duration, which is how long its
	// row locks were held.
	MaintenanceRuns    *prometheus.CounterVec // result
	MaintenanceRemoved *prometheus.CounterVec // table
	MaintenanceBatch   prometheus.Histogram
	// MaintenanceLastSuccess is when the last successful run of any
	// process ended (the maintenance table), in Unix seconds: the same on
	// every worker, read at every check. Not set until first read.
	MaintenanceLastSuccess prometheus.Gauge
	// TableRows and TableBytes are the retained tables' (ledger, claims,
	// outbox) estimated rows and bytes on disk, read at every check.
	TableRows  *prometheus.GaugeVec // table
	TableBytes *prometheus.GaugeVec // table

	// The network exchanges the process makes, for the bill (AWS charges
	// SQS and SNS per request) and for the benchmark's cost per order.
	// AWSRequests counts every AWS API attempt, retries included, by the
	// SDK's service id (SQS, SNS, Secrets Manager) and operation name
	// (ReceiveMessage, Publish...); internal/app's middleware counts it.
	AWSRequests *prometheus.CounterVec // service, operation
	// SMTPCommands counts the SMTP commands the mailer issued, by verb:
	// EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, DATA_END (the end of a
	// message's data), RSET, QUIT (mailer.Config.CommandFunc).
	SMTPCommands *prometheus.CounterVec // command
	// RedisRoundTrips counts the exchanges with Redis: a command, or a
	// pipeline of them, is one (store/redisstore's hook).
	RedisRoundTrips prometheus.Counter
}

// New returns a set of metrics on a registry of its own.
func New() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	counterVec := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		reg.MustRegister(c)
		return c
	}
	gaugeVec := func(name, help string, labels ...string) *prometheus.GaugeVec {
		g := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		reg.MustRegister(g)
		return g
	}
	counter := func(name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
		reg.MustRegister(c)
		return c
	}
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "orderpipe_handler_duration_seconds",
		Help:    "Time from the start of a message's handler to its settlement, by handler and outcome (ok, retry, dead_letter).",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"handler", "outcome"})
	reg.MustRegister(duration)
	m := &Metrics{
		Registry:             reg,
		MessagesReceived:     counterVec("orderpipe_messages_received_total", "Messages received from SQS, by handler.", "handler"),
		MessagesProcessed:    counterVec("orderpipe_messages_processed_total", "Messages handled successfully and deleted, by handler.", "handler"),
		MessagesRetried:      counterVec("orderpipe_messages_retried_total", "Messages handed back to the queue for a later retry, by handler.", "handler"),
		MessagesDeadLettered: counterVec("orderpipe_messages_dead_lettered_total", "Messages moved to the DLQ at once, by handler and reason.", "handler", "reason"),
		MessagesReleased: counterVec("orderpipe_messages_released_total",
			"Messages received during shutdown and handed back at once (visibility 0), by handler.", "handler"),
		InFlight:        gaugeVec("orderpipe_messages_in_flight", "Messages received and not yet settled, by handler.", "handler"),
		HandlerDuration: duration,
		IdempotencyOutcomes: counterVec("orderpipe_idempotency_outcomes_total",
			"Decisions of the Redis idempotency layer, by handler and outcome.", "handler", "outcome"),
		RedisErrors:   counterVec("orderpipe_redis_errors_total", "Redis calls that failed or were skipped by the open breaker, by use.", "use"),
		CacheRequests: counterVec("orderpipe_product_cache_requests_total", "Product cache lookups per SKU, by result (hit, miss, error).", "result"),
		EmailsSent:    counterVec("orderpipe_emails_sent_total", "Emails accepted by the SMTP server, by event type.", "event_type"),
		EmailDuplicateRisk: counterVec("orderpipe_email_duplicate_risk_total",
			"Emails that may arrive twice: accepted but not recorded, of unknown outcome, or sent again after a claim ran out.", "cause"),
		BreakerState: gaugeVec("orderpipe_breaker_state", "Circuit breaker state per dependency: 0 closed, 1 half-open, 2 open.", "breaker"),
		BreakerTransitions: counterVec("orderpipe_breaker_transitions_total",
			"Circuit breaker transitions, by dependency and the state entered.", "breaker", "to"),
		Retries: counterVec("orderpipe_handler_retries_total",
			"In-process retries of a handler after a transient failure, by handler and reason.", "handler", "reason"),
		PoolResets: counterVec("orderpipe_db_pool_resets_total",
			"Times the database pool dropped its connections after a failover signature, by signature.", "reason"),
		OutboxPublished: counter("orderpipe_outbox_published_total",
			"Events published from the transactional outbox (inventory's out-of-stock cancellations)."),
		OutboxPublishFailures: counter("orderpipe_outbox_publish_failures_total",
			"Outbox batches the relay failed to publish (SNS down, throttling, timeout); they are published again later."),
		MaintenanceRuns: counterVec("orderpipe_maintenance_runs_total",
			"Retention runs this worker made (it held the maintenance lease), by result (ok, failed).", "result"),
		MaintenanceRemoved: counterVec("orderpipe_maintenance_removed_rows_total",
			"Rows this worker's retention runs removed, by table (processed_events, notifications, outbox).", "table"),
		TableRows: gaugeVec("orderpipe_table_rows",
			"Estimated rows of the retained tables (processed_events, notifications, outbox), by table.", "table"),
		TableBytes: gaugeVec("orderpipe_table_bytes",
			"On-disk size of the retained tables, indexes and TOAST included, by table.", "table"),
	}
	m.MaintenanceBatch, m.MaintenanceLastSuccess = maintenanceMetrics(reg)
	return m.withExchanges()
}

// withExchanges registers the counters of the process's network
// exchanges, AWS requests, SMTP commands and Redis round trips, on m.
func (m *Metrics) withExchanges() *Metrics {
	m.AWSRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orderpipe_aws_requests_total",
		Help: "AWS API requests this process sent, every attempt (retries included), by service and operation."}, []string{"service", "operation"})
	m.SMTPCommands = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "orderpipe_smtp_commands_total",
		Help: "SMTP commands this process sent, by command (DATA_END is the end of a message's data)."}, []string{"command"})
	m.RedisRoundTrips = prometheus.NewCounter(prometheus.CounterOpts{Name: "orderpipe_redis_round_trips_total",
		Help: "Round trips this process made to Redis: a command, or a pipeline of commands, is one; failed ones included."})
	m.Registry.MustRegister(m.AWSRequests, m.SMTPCommands, m.RedisRoundTrips)
	return m
}

// maintenanceMetrics registers the retention's histogram and gauge.
func maintenanceMetrics(reg *prometheus.Registry) (prometheus.Histogram, prometheus.Gauge) {
	batch := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "orderpipe_maintenance_batch_seconds",
		Help:    "Duration of each retention batch (one DELETE statement): how long its row locks were held.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5}})
	lastSuccess := prometheus.NewGauge(prometheus.GaugeOpts{Name: "orderpipe_maintenance_last_success_timestamp_seconds",
		Help: "End of the last successful retention run of any worker (the maintenance table), in Unix seconds."})
	reg.MustRegister(batch, lastSuccess)
	return batch, lastSuccess
}

// Or returns m, or a fresh set when m is nil: for components built without
// metrics (tools, tests), which then count into a registry nobody serves.
func Or(m *Metrics) *Metrics {
	if m == nil {
		return New()
	}
	return m
}

// Consumer returns the runtime's observer for one handler's queue.
func (m *Metrics) Consumer(handler string) worker.Observer {
	return consumerObserver{m: m, handler: handler, inFlight: m.InFlight.WithLabelValues(handler)}
}

type consumerObserver struct {
	m        *Metrics
	handler  string
	inFlight prometheus.Gauge
}

func (o consumerObserver) Received(n int) {
	o.m.MessagesReceived.WithLabelValues(o.handler).Add(float64(n))
}
func (o consumerObserver) InFlight(delta int) { o.inFlight.Add(float64(delta)) }
func (o consumerObserver) Processed()         { o.m.MessagesProcessed.WithLabelValues(o.handler).Inc() }
func (o consumerObserver) Retried()           { o.m.MessagesRetried.WithLabelValues(o.handler).Inc() }
func (o consumerObserver) DeadLettered(reason string) {
	o.m.MessagesDeadLettered.WithLabelValues(o.handler, reason).Inc()
}
func (o consumerObserver) Released(n int) {
	o.m.MessagesReleased.WithLabelValues(o.handler).Add(float64(n))
}
func (o consumerObserver) Settled(outcome string, took time.Duration) {
	o.m.HandlerDuration.WithLabelValues(o.handler, outcome).Observe(took.Seconds())
}
