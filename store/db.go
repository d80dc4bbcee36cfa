// Package store is the PostgreSQL side of orderpipe: a pgx pool that works
// through a transaction-pooling proxy (PgBouncer locally, RDS Proxy in AWS)
// with its TLS and IAM rules and its circuit breaker, the embedded
// migrations, and one adapter per port a handler declares: Billing
// (billing.Store), Inventory (inventory.Store, with the outbox rows it
// writes), EmailClaims (notification.ClaimStore) and Catalog (the products);
// Outbox is the relay's side of the outbox. The adapters share the pool and
// nothing else. Redis is store/redisstore; the operator's queries are
// store/admin.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/resilience"
)

// Config configures the pool.
type Config struct {
	// URL is the PostgreSQL connection string (through the proxy). Required.
	URL string
	// Proxy is what URL points at: ProxyPgBouncer (the default),
	// ProxyRDS or ProxyNone (PostgreSQL itself). It sets the default
	// statement mode and what the configuration is checked against.
	Proxy string
	// MaxConns is the most connections this process holds. Defaults to 10.
	MaxConns int32
	// MinConns is kept open while idle. Defaults to 0.
	MinConns int32
	// MaxConnLifetime retires connections. Defaults to 15m; it must stay
	// below ProxyClientTimeout.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes idle connections. Defaults to 5m; it must stay
	// below ProxyClientTimeout.
	MaxConnIdleTime time.Duration
	// QueryTimeout bounds one transaction or statement once it has its
	// connection (a wait for a busy pool is not bounded by it). A database
	// that does not answer within it (a black-holed path, a proxy queueing
	// through a failover) is unavailable: the breaker counts it and the
	// pool's connections are dropped. Defaults to QueryTimeoutDefault.
	QueryTimeout time.Duration
	// ConnectTimeout bounds opening a connection, TLS and authentication
	// included, unless the URL sets connect_timeout. Defaults to
	// ConnectTimeoutDefault.
	ConnectTimeout time.Duration
	// ProxyClientTimeout is how long the proxy keeps an idle client
	// connection (RDS Proxy's IdleClientTimeout, 30m by default there). The
	// pool retires its connections before the proxy drops them. 0: none.
	ProxyClientTimeout time.Duration
	// StatementMode is the pgx query exec mode. Defaults per proxy:
	// "simple_protocol" behind RDS Proxy (any Parse message pins the
	// session), "exec" behind PgBouncer (unnamed statements; its transaction
	// mode breaks named, cached ones), "cache_statement" direct.
	StatementMode string
	// TLSCAFile is a PEM bundle to verify the server with. When set, and the
	// URL names no sslmode, sslmode=verify-full is used. Behind ProxyRDS, a
	// URL that names no TLS at all is verified against the system roots
	// (sslrootcert=system, verify-full). The URL must not repeat a TLS key.
	TLSCAFile string
	// IAM, when set, authenticates every new connection with an RDS IAM
	// token instead of a password. It needs TLS that verifies the server
	// (the token is a credential), no password in the URL, and a token
	// source for the URL's host, port and user (IAMTarget).
	IAM *IAMTokens
	// Secret, when set, gives every new connection the user and password
	// of a Secrets Manager secret (secret.go): cached, and read again when
	// the database refuses them. Not with IAM, nor with a password from
	// the URL.
	Secret *SecretCredentials
	// Logger receives the database breaker's transitions and pool resets.
	// Defaults to slog.Default().
	Logger *slog.Logger
	// Metrics counts pool resets and the breaker's states. Defaults to a
	// set nobody serves.
	Metrics *metrics.Metrics
	// TracerProvider, if set, traces the statements, batches, acquires and
	// connections that run within a trace (see trace.go). Nil: no hook is
	// installed.
	TracerProvider trace.TracerProvider
}

// Proxies.
const (
	ProxyPgBouncer = "pgbouncer"
	ProxyRDS       = "rds-proxy"
	ProxyNone      = "none"
)

// Config defaults.
const (
	MaxConnsDefault        = 10
	MaxConnLifetimeDefault = 15 * time.Minute
	MaxConnIdleTimeDefault = 5 * time.Minute
	StatementModeDefault   = "exec"
	QueryTimeoutDefault    = 5 * time.Second
	ConnectTimeoutDefault  = 5 * time.Second
)

var statementModes = map[string]pgx.QueryExecMode{
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
}

// defaultModes is each proxy's statement mode.
var defaultModes = map[string]string{
	ProxyPgBouncer: "exec",
	ProxyRDS:       "simple_protocol",
	ProxyNone:      "cache_statement",
}

// check refuses configurations that would pin or break against the proxy,
// or send a credential where it could be read. It decides from cc, pgx's own
// parse of the URL (with PG* environment variables, a service file and a
// passfile merged in), never from the URL's text: pgx takes the last of a
// repeated key, rewrites ssl=true, and reads ?password= as the password.
func (cfg *Config) check(cc *pgconn.Config) error {
	switch {
	case cfg.Proxy == ProxyRDS && cfg.StatementMode != "simple_protocol":
		return fmt.Errorf("store: DB_STATEMENT_MODE=%s sends Parse messages, and RDS Proxy pins the session of every client that does; use simple_protocol", cfg.StatementMode)
	case cfg.Proxy == ProxyPgBouncer && (cfg.StatementMode == "cache_statement" || cfg.StatementMode == "cache_describe"):
		return fmt.Errorf("store: DB_STATEMENT_MODE=%s caches named prepared statements, which PgBouncer in transaction mode hands to other server connections; use exec or simple_protocol", cfg.StatementMode)
	case cfg.Proxy == ProxyRDS && !verifiesServer(cc):
		return fmt.Errorf("store: DB_PROXY=rds-proxy needs TLS that verifies the server's certificate and host name (sslmode=verify-full: the default behind rds-proxy, against the system roots or DB_TLS_CA_FILE); DATABASE_URL (with PGSSLMODE and the like) gives %s", describeTLS(cc))
	case cfg.Secret != nil && cfg.IAM != nil:
		return errors.New("store: DB_SECRET_ID and DB_IAM_AUTH both supply the login: use one or the other")
	case cfg.Secret != nil && cc.Password != "":
		return errors.New("store: DB_SECRET_ID supplies the password and DATABASE_URL (or PGPASSWORD, or a passfile) supplies one too: use one or the other")
	case cfg.IAM != nil && cc.Password != "":
		return errors.New("store: DB_IAM_AUTH is on and DATABASE_URL (or PGPASSWORD, or a passfile) supplies a password: use one or the other")
	case cfg.IAM != nil && !verifiesServer(cc):
		return fmt.Errorf("store: DB_IAM_AUTH sends its token as a password, a credential: it needs TLS that verifies the server (sslmode=verify-full), and DATABASE_URL (with PGSSLMODE and the like) gives %s", describeTLS(cc))
	case cfg.IAM != nil && !sameEndpoint(cc):
		return errors.New("store: DB_IAM_AUTH signs a token for one host and port, and DATABASE_URL names several")
	case cfg.IAM != nil && !cfg.IAM.signsFor(cc):
		return errors.New("store: DB_IAM_AUTH's token source is for another host, port or user than DATABASE_URL names")
	case cfg.ProxyClientTimeout > 0 && cfg.MaxConnLifetime >= cfg.ProxyClientTimeout:
		return fmt.Errorf("store: DB_MAX_CONN_LIFETIME (%s) must be shorter than the proxy's client timeout (%s)", cfg.MaxConnLifetime, cfg.ProxyClientTimeout)
	case cfg.ProxyClientTimeout > 0 && cfg.MaxConnIdleTime >= cfg.ProxyClientTimeout:
		return fmt.Errorf("store: DB_MAX_CONN_IDLE_TIME (%s) must be shorter than the proxy's client timeout (%s)", cfg.MaxConnIdleTime, cfg.ProxyClientTimeout)
	}
	return nil
}

// DB is the pool and the transactions run on it. Every handler call goes
// through the database circuit breaker; a failover signature (a demoted or
// vanished writer) drops the pool's connections at once, so the next
// transactions connect to the new writer instead of failing one stale
// connection at a time.
type DB struct {
	pool      *pgxpool.Pool
	breaker   *resilience.Breaker
	log       *slog.Logger
	metrics   *metrics.Metrics
	lastReset atomic.Int64 // unix nanos
	timeout   time.Duration
	secret    *SecretCredentials // nil: the URL's login
}

// Database breaker settings: five unavailable failures in a row open it;
// while open, a writability probe runs every half second and the first
// success closes it.
const (
	DBBreakerFailures = 5
	DBBreakerOpenFor  = time.Second
	poolResetEvery    = time.Second
)

// Open connects the pool. It does not fail when the database is down: the
// pool connects lazily, and the handlers retry.
func Open(ctx context.Context, cfg Config) (*DB, error) {
	pc, err := PoolConfig(cfg)
	if err != nil {
		return nil, err
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("store: open pool: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	db := &DB{pool: pool, log: log, metrics: metrics.Or(cfg.Metrics), timeout: orDefault(cfg.QueryTimeout, QueryTimeoutDefault), secret: cfg.Secret}
	db.breaker = resilience.NewBreaker(ctx, resilience.BreakerConfig{
		Name: "database", Failures: DBBreakerFailures, OpenFor: DBBreakerOpenFor,
		Probe: db.probeWritable, Logger: log, Metrics: db.metrics,
	})
	return db, nil
}

// PoolConfig turns cfg into a pgxpool configuration, or refuses it.
func PoolConfig(cfg Config) (*pgxpool.Config, error) {
	if cfg.URL == "" {
		return nil, errors.New("store: Config.URL is required")
	}
	if cfg.Proxy == "" {
		cfg.Proxy = ProxyPgBouncer
	}
	if _, ok := defaultModes[cfg.Proxy]; !ok {
		return nil, fmt.Errorf("store: unknown proxy %q (want pgbouncer, rds-proxy or none)", cfg.Proxy)
	}
	if cfg.StatementMode == "" {
		cfg.StatementMode = defaultModes[cfg.Proxy]
	}
	mode, ok := statementModes[cfg.StatementMode]
	if !ok {
		return nil, fmt.Errorf("store: unknown statement mode %q (want exec, simple_protocol, describe_exec, cache_statement or cache_describe)", cfg.StatementMode)
	}
	cfg.MaxConnLifetime = orDefault(cfg.MaxConnLifetime, MaxConnLifetimeDefault)
	cfg.MaxConnIdleTime = orDefault(cfg.MaxConnIdleTime, MaxConnIdleTimeDefault)
	connString, err := withTLS(cfg.URL, cfg.Proxy, cfg.TLSCAFile)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		// pgx's error can echo the URL; the URL can hold a password.
		return nil, errors.New("store: DATABASE_URL is not a valid PostgreSQL connection string (or a file it or DB_TLS_CA_FILE names is unreadable)")
	}
	if err := cfg.check(&pc.ConnConfig.Config); err != nil {
		return nil, err
	}
	pc.ConnConfig.DefaultQueryExecMode = mode
	pc.MaxConns = orDefault(cfg.MaxConns, MaxConnsDefault)
	pc.MinConns = cfg.MinConns
	pc.MaxConnLifetime = cfg.MaxConnLifetime
	pc.MaxConnLifetimeJitter = cfg.MaxConnLifetime / 10 // no reconnect storm when all connections age together
	pc.MaxConnIdleTime = cfg.MaxConnIdleTime
	if pc.ConnConfig.ConnectTimeout == 0 {
		pc.ConnConfig.ConnectTimeout = orDefault(cfg.ConnectTimeout, ConnectTimeoutDefault)
	}
	pc.ConnConfig.Tracer = queryTracer(cfg.TracerProvider)
	pc.BeforeConnect = cfg.Secret.beforeConnectHook() // nil without a secret
	if cfg.IAM != nil {
		tokens := cfg.IAM
		pc.BeforeConnect = func(ctx context.Context, cc *pgx.ConnConfig) error {
			token, err := tokens.Token(ctx)
			if err != nil {
				return err
			}
			cc.Password = token
			return nil
		}
	}
	return pc, nil
}

func orDefault[T int32 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

// Pool returns the underlying pool, for tools and tests.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// closeWait bounds Close: connections still closing after it are left to
// finish in the background.
const closeWait = 2 * time.Second

// Close stops the breaker's prober and closes the pool, waiting at most
// closeWait. After a hang, pgx closes a timed-out connection by first
// sending a cancel request on a new connection, for up to 15 s; a worker
// shutting down must not wait for that.
func (db *DB) Close() {
	db.breaker.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		db.pool.Close()
	}()
	select {
	case <-done:
	case <-time.After(closeWait):
		db.log.Warn("database connections still closing; leaving them to finish", "waited", closeWait.String())
	}
}

// Breaker is the database circuit breaker: consumers wait on it.
func (db *DB) Breaker() *resilience.Breaker { return db.breaker }

// run acquires a connection, waiting as long as ctx allows (a busy pool is
// not the database's fault), and runs fn on it within the query timeout,
// through the breaker; a failover signature drops the pool's connections. A
// database that does not answer within the timeout is ErrNoAnswer:
// unavailable, as a refused connection is.
func (db *DB) run(ctx context.Context, fn func(ctx context.Context, conn *pgxpool.Conn) error) error {
	err := db.breaker.Do(func() error {
		conn, err := db.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("acquire a connection: %w", err)
		}
		defer conn.Release()
		qctx, cancel := context.WithTimeoutCause(ctx, db.timeout, errNoAnswer)
		defer cancel()
		err = fn(qctx, conn)
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(qctx), errNoAnswer) {
			err = fmt.Errorf("%w (DB_QUERY_TIMEOUT %s): %w", resilience.ErrNoAnswer, db.timeout, err)
		}
		return err
	})
	if err != nil {
		if f := resilience.Classify(err); f.Failover {
			db.resetPool(f.Reason)
		}
		db.refused(ctx, err)
	}
	return err
}

// errNoAnswer is the cause of a query timeout's deadline.
var errNoAnswer = errors.New("the database did not answer in time")

// resetPool closes every pooled connection (in-use ones when released), at
// most once per poolResetEvery.
func (db *DB) resetPool(reason string) {
	now := time.Now().UnixNano()
	last := db.lastReset.Load()
	if now-last < int64(poolResetEvery) || !db.lastReset.CompareAndSwap(last, now) {
		return
	}
	db.pool.Reset()
	db.metrics.PoolResets.WithLabelValues(reason).Inc()
	db.log.Warn("failover signature: dropped the pool's connections", "reason", reason)
}

// probeWritable succeeds when the database answers and accepts writes (it
// is not a standby): a demoted writer that answers reads is still down for
// the handlers.
func (db *DB) probeWritable(ctx context.Context) error {
	var recovery bool
	if err := db.pool.QueryRow(ctx, `SELECT pg_is_in_recovery()`).Scan(&recovery); err != nil {
		if f := resilience.Classify(err); f.Failover {
			db.resetPool(f.Reason)
		}
		db.refused(ctx, err)
		return fmt.Errorf("probe: %w", err)
	}
	if recovery {
		db.resetPool("read_only_sql_transaction")
		return fmt.Errorf("probe: %w", &pgconn.PgError{Code: "25006", Message: "database is a standby"})
	}
	return nil
}

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// exec runs one statement (its own transaction) through run.
func (db *DB) exec(ctx context.Context, sql string, args ...any) error {
	return db.run(ctx, func(ctx context.Context, conn *pgxpool.Conn) error {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
		return nil
	})
}
