package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/seed"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/admin"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
)

// AppName is the application_name of the benchmark's own database
// connections, so the connection count leaves them out.
const AppName = "orderpipe-bench"

// StackConfig says where the local stack is and which corner of it the
// benchmark may use: its own database, topology prefix, Redis prefix and
// email domain, so it never touches the demo's or the tests' data.
type StackConfig struct {
	AWS aws.Config
	// AdminURL is PostgreSQL itself (ADMIN_DATABASE_URL): the benchmark
	// creates its database and counts connections through it. Required.
	AdminURL string
	// ProxyURL is DATABASE_URL: the worker reaches the benchmark's database
	// through the same proxy, with the database name replaced. Required.
	ProxyURL string
	// DBName is the benchmark's database. Defaults to "orderpipe_bench".
	DBName string
	// Prefix is the topology's name prefix. Defaults to "bench-".
	Prefix string
	// RedisURL and RedisPrefix: the worker's Redis and the benchmark's key
	// namespace (defaults to "orderpipe-bench:").
	RedisURL    string
	RedisPrefix string
	// SMTPAddr and MailpitURL: where emails go, and Mailpit's API to delete
	// the benchmark's emails between runs (empty: leave them).
	SMTPAddr   string
	MailpitURL string
	// Domain is the customers' email domain. Defaults to "bench.example.com".
	Domain string
}

func (c *StackConfig) setDefaults() {
	if c.DBName == "" {
		c.DBName = "orderpipe_bench"
	}
	if c.Prefix == "" {
		c.Prefix = "bench-"
	}
	if c.RedisPrefix == "" {
		c.RedisPrefix = "orderpipe-bench:"
	}
	if c.Domain == "" {
		c.Domain = "bench.example.com"
	}
}

// Stack is the benchmark's corner of the local stack, set up.
type Stack struct {
	Cfg       StackConfig
	Top       topology.Topology
	Applied   topology.Applied
	SQS       *sqs.Client
	SNS       *sns.Client
	ProxyURL  string             // the benchmark database through the proxy
	Admin     *pgxpool.Pool      // PostgreSQL's maintenance database, direct
	Direct    *pgxpool.Pool      // the benchmark database, direct: resets and measurements
	Store     *store.DB          // the benchmark database, direct, for migrations and resets
	Redis     *redisstore.Client // under the benchmark's key prefix
	Publisher *events.Publisher
	// keepLedger, when set, is the order_id prefix of the ledger rows a
	// reset keeps (the ledger phase's pre-filled rows).
	keepLedger string
}

// OpenStack creates (once) and migrates the benchmark's database and applies
// its topology.
func OpenStack(ctx context.Context, cfg StackConfig) (*Stack, error) {
	cfg.setDefaults()
	if cfg.AdminURL == "" || cfg.ProxyURL == "" {
		return nil, errors.New("bench: ADMIN_DATABASE_URL and DATABASE_URL are needed (eval \"$(scripts/stack.sh env)\")")
	}
	s := &Stack{Cfg: cfg, SQS: sqs.NewFromConfig(cfg.AWS), SNS: sns.NewFromConfig(cfg.AWS)}
	var err error
	if s.Admin, err = openPool(ctx, cfg.AdminURL, ""); err != nil {
		return nil, err
	}
	if err := s.createDatabase(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.open(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Stack) open(ctx context.Context) error {
	var err error
	if s.ProxyURL, err = withDatabase(s.Cfg.ProxyURL, s.Cfg.DBName); err != nil {
		return err
	}
	directURL, err := withDatabase(s.Cfg.AdminURL, s.Cfg.DBName)
	if err != nil {
		return err
	}
	if s.Direct, err = openPool(ctx, s.Cfg.AdminURL, s.Cfg.DBName); err != nil {
		return err
	}
	quiet := slog.New(slog.DiscardHandler)
	if s.Store, err = store.Open(ctx, store.Config{URL: withAppName(directURL), Proxy: store.ProxyNone, MaxConns: 4, Logger: quiet}); err != nil {
		return err
	}
	if err := s.Store.Migrate(ctx, quiet); err != nil {
		return err
	}
	s.Top = topology.Default().WithPrefix(s.Cfg.Prefix)
	if s.Applied, err = topology.Apply(ctx, s.SNS, s.SQS, s.Top); err != nil {
		return fmt.Errorf("bench topology: %w", err)
	}
	if s.Redis, err = redisstore.Open(ctx, redisstore.Config{URL: s.Cfg.RedisURL, KeyPrefix: s.Cfg.RedisPrefix, Logger: quiet}); err != nil {
		return err
	}
	s.Publisher, err = events.NewPublisher(s.SNS, events.PublisherConfig{TopicARN: s.Applied.TopicARN, Concurrency: 1})
	return err
}

func (s *Stack) createDatabase(ctx context.Context) error {
	var exists bool
	if err := s.Admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, s.Cfg.DBName).Scan(&exists); err != nil {
		return fmt.Errorf("bench: look for database %s: %w", s.Cfg.DBName, err)
	}
	if exists {
		return nil
	}
	if _, err := s.Admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{s.Cfg.DBName}.Sanitize()); err != nil {
		return fmt.Errorf("bench: create database %s: %w", s.Cfg.DBName, err)
	}
	return nil
}

// Close closes what OpenStack opened.
func (s *Stack) Close() {
	if s.Redis != nil {
		_ = s.Redis.Close()
	}
	if s.Store != nil {
		s.Store.Close()
	}
	for _, p := range []*pgxpool.Pool{s.Direct, s.Admin} {
		if p != nil {
			p.Close()
		}
	}
}

// Reset empties the order tables, restores the benchmark catalog (stock no
// run can exhaust) and the coupons, purges the queues, the Redis keys and
// the benchmark's emails: every run starts from the same state.
func (s *Stack) Reset(ctx context.Context) error {
	if err := admin.ResetKeepingLedger(ctx, s.Store, Products(), seed.Coupons, s.keepLedger); err != nil {
		return err
	}
	if _, err := s.Direct.Exec(ctx, `VACUUM ANALYZE products, coupons, invoice_counter`); err != nil {
		return fmt.Errorf("bench: vacuum: %w", err)
	}
	var urls []string
	for _, q := range s.Applied.Queues {
		urls = append(urls, q.URL, q.DLQURL)
	}
	if err := PurgeQueues(ctx, s.SQS, urls...); err != nil {
		return err
	}
	if _, err := s.Redis.Purge(ctx); err != nil {
		return err
	}
	return s.DeleteEmails(ctx)
}

// DeleteEmails deletes the emails sent to the benchmark's domain from Mailpit.
func (s *Stack) DeleteEmails(ctx context.Context) error {
	if s.Cfg.MailpitURL == "" {
		return nil
	}
	q := url.Values{"query": {fmt.Sprintf("to:%q", s.Cfg.Domain)}}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.Cfg.MailpitURL+"/api/v1/search?"+q.Encode(), nil)
	if err != nil {
		return fmt.Errorf("bench: delete emails: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("bench: delete emails: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("bench: delete emails: mailpit answered %s", resp.Status)
	}
	return nil
}

// PurgeQueues purges the queues and waits until they are empty.
func PurgeQueues(ctx context.Context, sqsc *sqs.Client, urls ...string) error {
	for _, u := range urls {
		if _, err := sqsc.PurgeQueue(ctx, &sqs.PurgeQueueInput{QueueUrl: aws.String(u)}); err != nil {
			return fmt.Errorf("bench: purge %s: %w", u, err)
		}
	}
	deadline := time.Now().Add(90 * time.Second)
	for _, u := range urls {
		for {
			n, err := topology.Depth(ctx, sqsc, u)
			if err != nil {
				return err
			}
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("bench: %s still holds %d messages after the purge", u, n)
			}
			if !sleepCtx(ctx, 200*time.Millisecond) {
				return ctx.Err()
			}
		}
	}
	return nil
}

// withDatabase returns rawURL with its database replaced by db (if set).
func withDatabase(rawURL, db string) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("bench: database URLs must be postgres:// URLs")
	}
	if db != "" {
		u.Path = "/" + db
	}
	return u.String(), nil
}

// withAppName tags a connection string with AppName.
func withAppName(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return rawURL
	}
	q := u.Query()
	q.Set("application_name", AppName)
	u.RawQuery = q.Encode()
	return u.String()
}

// openPool opens a small direct pool to rawURL (database db if set),
// tagged with AppName.
func openPool(ctx context.Context, rawURL, db string) (*pgxpool.Pool, error) {
	u, err := withDatabase(rawURL, db)
	if err != nil {
		return nil, err
	}
	pc, err := pgxpool.ParseConfig(withAppName(u))
	if err != nil {
		return nil, errors.New("bench: ADMIN_DATABASE_URL is not a valid connection string")
	}
	pc.MaxConns = 4
	p, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("bench: connect to PostgreSQL: %w", err)
	}
	if err := p.Ping(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("bench: connect to PostgreSQL (run `make up`): %w", err)
	}
	return p, nil
}
