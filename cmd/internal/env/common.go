package env

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

// Common is the configuration the worker and orderctl share. The defaults
// point at the local stack (scripts/stack.sh).
type Common struct {
	Region, Endpoint string
	Prefix           string
	Store            store.Config
	IAMAuth          bool
	Redis            store.RedisConfig
}

// LoadCommon reads the shared variables.
func LoadCommon(e *Env) Common {
	return Common{
		Region:   e.String("AWS_REGION", "us-east-1", "AWS region"),
		Endpoint: e.String("AWS_ENDPOINT_URL", "http://127.0.0.1:4566", "SNS/SQS endpoint; the emulator by default, set it empty to use AWS's own endpoints"),
		Prefix:   e.String("ORDERPIPE_NAME_PREFIX", "", "prefix for the topic and queue names (to keep environments apart)"),
		Store: store.Config{
			URL:                e.String("DATABASE_URL", "postgres://postgres@127.0.0.1:6432/orderpipe?sslmode=disable", "PostgreSQL through the proxy (PgBouncer locally, RDS Proxy in AWS)"),
			MaxConns:           int32(e.Int("DB_MAX_CONNS", store.MaxConnsDefault, 1, 1000, "most database connections this process holds")),
			MinConns:           int32(e.Int("DB_MIN_CONNS", 0, 0, 1000, "idle database connections kept open")),
			Proxy:              e.String("DB_PROXY", store.ProxyPgBouncer, "what DATABASE_URL points at: pgbouncer, rds-proxy or none; sets the statement mode and the checks"),
			MaxConnLifetime:    e.Duration("DB_MAX_CONN_LIFETIME", store.MaxConnLifetimeDefault, "retire connections after this; must stay below DB_PROXY_CLIENT_TIMEOUT"),
			MaxConnIdleTime:    e.Duration("DB_MAX_CONN_IDLE_TIME", store.MaxConnIdleTimeDefault, "close connections idle this long; must stay below DB_PROXY_CLIENT_TIMEOUT"),
			ProxyClientTimeout: e.DurationOrOff("DB_PROXY_CLIENT_TIMEOUT", 0, "the proxy's idle client timeout (RDS Proxy: 30m unless changed); 0 for none"),
			StatementMode:      e.String("DB_STATEMENT_MODE", "", "pgx query mode; empty for the proxy's: simple_protocol (rds-proxy), exec (pgbouncer), cache_statement (none)"),
			TLSCAFile:          e.String("DB_TLS_CA_FILE", "", "PEM CA bundle to verify the proxy with; sets sslmode=verify-full unless the URL names a mode"),
			EmailClaimTTL:      e.Duration("EMAIL_CLAIM_TTL", store.EmailClaimTTLDefault, "lease of an email claim: a dead worker's unsent email waits this long; accepted emails are recorded for up to this minus SMTP_TIMEOUT minus 20s"),
		},
		IAMAuth: e.Bool("DB_IAM_AUTH", false, "authenticate with RDS IAM tokens (from the AWS credential chain) instead of a password"),
		Redis: store.RedisConfig{
			URL:       e.String("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for idempotency keys and the product cache (rediss:// for TLS)"),
			KeyPrefix: e.String("REDIS_KEY_PREFIX", store.RedisKeyPrefixDefault, "namespace of every Redis key, to share a server between deployments"),
			Timeout:   e.Duration("REDIS_TIMEOUT", store.RedisTimeoutDefault, "bound on one Redis call; slower counts as a failure"),
		},
	}
}

// Topology is the declared topology with the configured prefix.
func (c Common) Topology() topology.Topology { return topology.Default().WithPrefix(c.Prefix) }

// AWS loads the AWS configuration.
func (c Common) AWS(ctx context.Context) (aws.Config, error) {
	cfg, err := app.AWSConfig(ctx, c.Region, c.Endpoint, Set("AWS_ACCESS_KEY_ID"))
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws: %w", err)
	}
	return cfg, nil
}

// StoreConfig is the pool configuration, with an IAM token source when
// DB_IAM_AUTH is on (its endpoint and user come from DATABASE_URL).
func (c Common) StoreConfig(ctx context.Context) (store.Config, error) {
	cfg := c.Store
	if !c.IAMAuth {
		return cfg, nil
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Port() == "" || u.User.Username() == "" {
		return cfg, errors.New("DB_IAM_AUTH: DATABASE_URL must name the user, host and port (postgres://user@host:5432/db)")
	}
	awsCfg, err := app.AWSConfig(ctx, c.Region, "", Set("AWS_ACCESS_KEY_ID"))
	if err != nil {
		return cfg, fmt.Errorf("DB_IAM_AUTH: %w", err)
	}
	cfg.IAM = store.NewIAMTokens(u.Host, c.Region, u.User.Username(), awsCfg.Credentials)
	return cfg, nil
}
