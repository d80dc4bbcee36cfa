// Package store is the database side of orderpipe: a pgx pool that works
// through a transaction-pooling proxy (PgBouncer locally, RDS Proxy in AWS),
// the embedded migrations and seed data, and the transactions the handlers
// run. It implements the small interfaces the handlers declare.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config configures the pool.
type Config struct {
	// URL is the PostgreSQL connection string (through the proxy). Required.
	URL string
	// MaxConns is the most connections this process holds. Defaults to 10.
	MaxConns int32
	// MinConns is kept open while idle. Defaults to 0.
	MinConns int32
	// MaxConnLifetime retires connections; keep it below the proxy's. Defaults to 30m.
	MaxConnLifetime time.Duration
	// MaxConnIdleTime closes idle connections. Defaults to 5m.
	MaxConnIdleTime time.Duration
	// StatementMode is the pgx query exec mode: "exec" (extended protocol,
	// unnamed statements: safe behind PgBouncer in transaction mode),
	// "simple_protocol" (never pins an RDS Proxy session), or
	// "cache_statement" (direct connections only). Defaults to "exec".
	StatementMode string
}

// Config defaults.
const (
	MaxConnsDefault        = 10
	MaxConnLifetimeDefault = 30 * time.Minute
	MaxConnIdleTimeDefault = 5 * time.Minute
	StatementModeDefault   = "exec"
)

var statementModes = map[string]pgx.QueryExecMode{
	"exec":            pgx.QueryExecModeExec,
	"simple_protocol": pgx.QueryExecModeSimpleProtocol,
	"cache_statement": pgx.QueryExecModeCacheStatement,
	"cache_describe":  pgx.QueryExecModeCacheDescribe,
	"describe_exec":   pgx.QueryExecModeDescribeExec,
}

// DB is the pool and the transactions run on it.
type DB struct {
	pool *pgxpool.Pool
}

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
	return &DB{pool: pool}, nil
}

// PoolConfig turns cfg into a pgxpool configuration.
func PoolConfig(cfg Config) (*pgxpool.Config, error) {
	if cfg.URL == "" {
		return nil, errors.New("store: Config.URL is required")
	}
	if cfg.StatementMode == "" {
		cfg.StatementMode = StatementModeDefault
	}
	mode, ok := statementModes[cfg.StatementMode]
	if !ok {
		return nil, fmt.Errorf("store: unknown statement mode %q (want exec, simple_protocol or cache_statement)", cfg.StatementMode)
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's error can echo the URL; the URL can hold a password.
		return nil, errors.New("store: DATABASE_URL is not a valid PostgreSQL connection string")
	}
	pc.ConnConfig.DefaultQueryExecMode = mode
	pc.MaxConns = orDefault(cfg.MaxConns, MaxConnsDefault)
	pc.MinConns = cfg.MinConns
	pc.MaxConnLifetime = orDefault(cfg.MaxConnLifetime, MaxConnLifetimeDefault)
	pc.MaxConnIdleTime = orDefault(cfg.MaxConnIdleTime, MaxConnIdleTimeDefault)
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

// Close closes the pool.
func (db *DB) Close() { db.pool.Close() }

// Ping checks that the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.pool.Ping(ctx); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// inTx runs fn in a read-committed transaction, committing if it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(t *txn) error) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error { return fn(&txn{tx: tx}) })
}
