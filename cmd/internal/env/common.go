package env

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
)

// Common is the configuration the worker and orderctl share. The defaults
// point at the local stack (scripts/stack.sh) for the database and Redis;
// AWS is AWS itself unless the SDK's own variables (AWS_ENDPOINT_URL, the
// credentials) say otherwise, as `scripts/stack.sh env` does.
type Common struct {
	Region  string
	Prefix  string
	Store   store.Config
	IAMAuth bool
	// SecretID is DB_SECRET_ID: the Secrets Manager secret the database
	// login comes from, or empty.
	SecretID string
	Redis    redisstore.Config
	// Retention is LEDGER_RETENTION (retention.go).
	Retention time.Duration
}

// LoadCommon reads the shared variables.
func LoadCommon(e *Env) Common {
	c := Common{
		Region: e.String("AWS_REGION", "us-east-1", "AWS region (of SNS/SQS and of the RDS IAM token)"),
	}
	e.ReadBySDK("AWS_ENDPOINT_URL", "read by the AWS SDK: the SNS/SQS endpoint, for an emulator (AWS_ENDPOINT_URL_SQS and AWS_ENDPOINT_URL_SNS per service); unset, AWS's own endpoints")
	e.ReadBySDK("AWS_ACCESS_KEY_ID", "read by the AWS SDK, with AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN: static credentials; unset, the rest of the default credential chain (the ECS task role)")
	c.Prefix = e.String("ORDERPIPE_NAME_PREFIX", "", "prefix for the topic and queue names (to keep environments apart)")
	c.Store = store.Config{
		URL:                e.URL("DATABASE_URL", "postgres://postgres@127.0.0.1:6432/orderpipe?sslmode=disable", "PostgreSQL through the proxy (PgBouncer locally, RDS Proxy in AWS)"),
		MaxConns:           int32(e.Int("DB_MAX_CONNS", store.MaxConnsDefault, 1, 1000, "most database connections this process holds")), //nolint:gosec // G115: e.Int bounds it to 1..1000
		MinConns:           int32(e.Int("DB_MIN_CONNS", 0, 0, 1000, "idle database connections kept open")),                              //nolint:gosec // G115: e.Int bounds it to 0..1000
		Proxy:              e.String("DB_PROXY", store.ProxyPgBouncer, "what DATABASE_URL points at: pgbouncer, rds-proxy or none; sets the statement mode and the checks (rds-proxy: verify-full TLS against the system roots unless the URL or DB_TLS_CA_FILE names TLS)"),
		MaxConnLifetime:    e.Duration("DB_MAX_CONN_LIFETIME", store.MaxConnLifetimeDefault, "retire connections after this; must stay below DB_PROXY_CLIENT_TIMEOUT"),
		MaxConnIdleTime:    e.Duration("DB_MAX_CONN_IDLE_TIME", store.MaxConnIdleTimeDefault, "close connections idle this long; must stay below DB_PROXY_CLIENT_TIMEOUT"),
		QueryTimeout:       e.Duration("DB_QUERY_TIMEOUT", store.QueryTimeoutDefault, "bound on one transaction once it has its connection; a database that does not answer within it counts against the breaker"),
		ConnectTimeout:     e.Duration("DB_CONNECT_TIMEOUT", store.ConnectTimeoutDefault, "bound on opening a connection (TCP, TLS, authentication) unless DATABASE_URL sets connect_timeout"),
		ProxyClientTimeout: e.DurationOrOff("DB_PROXY_CLIENT_TIMEOUT", 0, "the proxy's idle client timeout (RDS Proxy: 30m unless changed); 0 for none"),
		StatementMode:      e.String("DB_STATEMENT_MODE", "", "pgx query mode; empty for the proxy's: simple_protocol (rds-proxy), exec (pgbouncer), cache_statement (none)"),
		TLSCAFile:          e.String("DB_TLS_CA_FILE", "", "PEM CA bundle to verify the server with (optional: behind rds-proxy the system roots are the default); sets sslmode=verify-full unless the URL names a mode"),
	}
	c.IAMAuth = e.Bool("DB_IAM_AUTH", false, "authenticate with RDS IAM tokens (from the AWS credential chain) instead of a password; needs verify-full TLS")
	c.SecretID = e.String("DB_SECRET_ID", "", "name or ARN of a Secrets Manager secret in the RDS format: the database user and password come from its username and password (DATABASE_URL's user is replaced), cached, and read again when the database refuses them (a rotation); not with DB_IAM_AUTH")
	e.ReadBySDK("AWS_ENDPOINT_URL_SECRETS_MANAGER", "read by the AWS SDK: the Secrets Manager endpoint (moto's server in the tests); unset, AWS_ENDPOINT_URL or AWS's own")
	if c.SecretID != "" && c.IAMAuth {
		e.Failf("DB_SECRET_ID", "is set and so is DB_IAM_AUTH: the login comes from one or the other")
	}
	c.Retention = LoadRetention(e, topology.Default())
	c.Redis = redisstore.Config{
		URL:       e.URL("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis for idempotency keys and the product cache (rediss:// for TLS)"),
		KeyPrefix: e.String("REDIS_KEY_PREFIX", redisstore.KeyPrefixDefault, "namespace of every Redis key, to share a server between deployments"),
		Timeout:   e.Duration("REDIS_TIMEOUT", redisstore.TimeoutDefault, "bound on one Redis call; slower counts as a failure"),
	}
	return c
}

// Topology is the declared topology with the configured prefix.
func (c Common) Topology() topology.Topology { return topology.Default().WithPrefix(c.Prefix) }

// AWS loads the AWS configuration: the SDK's default chain and endpoints.
// It contacts nothing; credentials are retrieved on first use.
func (c Common) AWS(ctx context.Context) (aws.Config, error) {
	cfg, err := app.AWSConfig(ctx, c.Region)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS_REGION/AWS_*: %w", err)
	}
	return cfg, nil
}

// StoreConfig is the pool configuration, with an IAM token source when
// DB_IAM_AUTH is on: signed with the AWS credential chain for the host,
// port and user pgx reads from DATABASE_URL; or with the credentials of
// the DB_SECRET_ID secret. Building it retrieves no credentials and reads
// no secret.
func (c Common) StoreConfig(ctx context.Context) (store.Config, error) {
	cfg := c.Store
	if c.SecretID != "" {
		awsCfg, err := c.AWS(ctx)
		if err != nil {
			return cfg, fmt.Errorf("DB_SECRET_ID: %w", err)
		}
		cfg.Secret = store.NewSecretCredentials(secretsmanager.NewFromConfig(awsCfg), c.SecretID)
	}
	if !c.IAMAuth {
		return cfg, nil
	}
	endpoint, user, err := store.IAMTarget(cfg.URL)
	if err != nil {
		return cfg, fmt.Errorf("DB_IAM_AUTH: %w", err)
	}
	awsCfg, err := c.AWS(ctx)
	if err != nil {
		return cfg, fmt.Errorf("DB_IAM_AUTH: %w", err)
	}
	cfg.IAM = store.NewIAMTokens(endpoint, c.Region, user, awsCfg.Credentials)
	return cfg, nil
}

// CheckIdempotencyLease refuses an IDEMPOTENCY_LEASE the idempotency keys
// cannot keep: the lease is renewed every third of itself, and one renewal
// can take a whole REDIS_TIMEOUT.
func CheckIdempotencyLease(e *Env, lease, redisTimeout time.Duration) {
	if floor := IdempotencyLeaseFloor(redisTimeout); lease < floor {
		e.Failf("IDEMPOTENCY_LEASE", "%s is too short: it is renewed every third of itself and a renewal can take REDIS_TIMEOUT (%s); want at least 1s and 3 x REDIS_TIMEOUT (%s)", lease, redisTimeout, floor)
	}
}

// IdempotencyLeaseFloor is the shortest lease CheckIdempotencyLease accepts.
func IdempotencyLeaseFloor(redisTimeout time.Duration) time.Duration {
	return max(time.Second, 3*redisTimeout)
}
