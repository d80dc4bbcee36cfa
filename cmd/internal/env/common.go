package env

import (
	"context"
	"fmt"

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
	RedisURL         string
}

// LoadCommon reads the shared variables.
func LoadCommon(e *Env) Common {
	return Common{
		Region:   e.String("AWS_REGION", "us-east-1", "AWS region"),
		Endpoint: e.String("AWS_ENDPOINT_URL", "http://127.0.0.1:4566", "SNS/SQS endpoint; the emulator by default, set it empty to use AWS's own endpoints"),
		Prefix:   e.String("ORDERPIPE_NAME_PREFIX", "", "prefix for the topic and queue names (to keep environments apart)"),
		Store: store.Config{
			URL:             e.String("DATABASE_URL", "postgres://postgres@127.0.0.1:6432/orderpipe?sslmode=disable", "PostgreSQL through the proxy (PgBouncer locally, RDS Proxy in AWS)"),
			MaxConns:        int32(e.Int("DB_MAX_CONNS", store.MaxConnsDefault, 1, 1000, "most database connections this process holds")),
			MinConns:        int32(e.Int("DB_MIN_CONNS", 0, 0, 1000, "idle database connections kept open")),
			MaxConnLifetime: e.Duration("DB_MAX_CONN_LIFETIME", store.MaxConnLifetimeDefault, "retire connections after this; keep it below the proxy's"),
			MaxConnIdleTime: e.Duration("DB_MAX_CONN_IDLE_TIME", store.MaxConnIdleTimeDefault, "close connections idle this long"),
			StatementMode:   e.String("DB_STATEMENT_MODE", store.StatementModeDefault, "pgx query mode: exec (PgBouncer), simple_protocol (RDS Proxy), cache_statement (direct only)"),
		},
		RedisURL: e.String("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for idempotency keys"),
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
