// Package testenv is the shared harness of the integration tests: real
// PostgreSQL through PgBouncer, the SNS/SQS emulator (or LocalStack), Redis
// and Mailpit, as `make up` starts them. Each test binary gets its own fresh
// database; each test gets its own topology (a unique name prefix) and its own
// email domain, so tests run in parallel without seeing each other's data.
package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/mailpit"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/topology"
)

func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Service addresses, from the same variables as `scripts/stack.sh env`.
var (
	AdminDatabaseURL = getenv("ADMIN_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	ProxyDatabaseURL = getenv("DATABASE_URL", "postgres://postgres@127.0.0.1:6432/orderpipe?sslmode=disable")
	RedisURL         = getenv("REDIS_URL", "redis://127.0.0.1:6379/0")
	SMTPAddr         = getenv("SMTP_ADDR", "127.0.0.1:1025")
	MailpitURL       = getenv("MAILPIT_URL", "http://127.0.0.1:8025")
	ToxiproxyURL     = getenv("TOXIPROXY_URL", "http://127.0.0.1:8474")
	Endpoint         = getenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
	Region           = getenv("AWS_REGION", "us-east-1")
)

// Env is one test binary's environment.
type Env struct {
	DBURL     string // the binary's own database, through PgBouncer
	DirectURL string // the same database, straight to PostgreSQL
	DBName    string
	DB        *store.DB
	AWS       aws.Config
}

var (
	once     sync.Once
	shared   *Env
	errSetup error
)

// Open returns the binary's environment, creating its database (dropped and
// recreated, then migrated) on first use. name must be unique per package:
// test binaries run in parallel, and a second one with the same name would
// drop the first's database under it.
//
// Under -short (`make test-unit`) the integration tests are skipped; `make
// test` never passes -short.
func Open(t testing.TB, name string) *Env {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	once.Do(func() { shared, errSetup = setup(name) })
	if errSetup != nil {
		t.Fatalf("integration environment (run `make up` first): %v", errSetup)
	}
	return shared
}

func setup(name string) (*Env, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// ORDERPIPE_TEST_DB_SUFFIX keeps two runs of one package (two
	// checkouts, say) out of each other's database.
	dbName := "orderpipe_test_" + name + os.Getenv("ORDERPIPE_TEST_DB_SUFFIX")
	admin, err := pgx.Connect(ctx, AdminDatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer admin.Close(ctx)
	for _, q := range []string{
		fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", pgx.Identifier{dbName}.Sanitize()),
		"CREATE DATABASE " + pgx.Identifier{dbName}.Sanitize(),
	} {
		if _, err := admin.Exec(ctx, q); err != nil {
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	u, err := url.Parse(ProxyDatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	u.Path = "/" + dbName
	e := &Env{DBURL: u.String(), DBName: dbName}
	d, err := url.Parse(AdminDatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("ADMIN_DATABASE_URL: %w", err)
	}
	d.Path = "/" + dbName
	e.DirectURL = d.String()
	if e.DB, err = store.Open(ctx, store.Config{URL: e.DBURL, MaxConns: 20}); err != nil {
		return nil, err
	}
	if err := e.DB.Migrate(ctx, discardLogger()); err != nil {
		return nil, err
	}
	if e.AWS, err = app.AWSConfig(ctx, Region, Emulator()...); err != nil {
		return nil, err
	}
	return e, nil
}

// Emulator is the tests' AWS default: the emulator at Endpoint, with the
// dummy credentials emulators accept unless the environment has keys. The
// binaries have no such default (they go to AWS); a test that starts one
// passes AWS_ENDPOINT_URL and keys in its environment.
func Emulator() []func(*awsconfig.LoadOptions) error {
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithBaseEndpoint(Endpoint)}
	if os.Getenv("AWS_ACCESS_KEY_ID") == "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(credentials.NewStaticCredentialsProvider("test", "test", "")))
	}
	return opts
}

// Prefix returns a fresh name prefix for one test's resources.
func Prefix() string { return "t" + strings.ReplaceAll(uuid.NewString()[:8], "-", "") + "-" }

// Topology applies a fresh, prefixed copy of the declared topology, changed
// by adjust (shorter visibility timeouts, say) if given, and deletes it
// when the test ends.
func (e *Env) Topology(t testing.TB, adjust ...func(*topology.Topology)) (topology.Topology, topology.Applied) {
	t.Helper()
	ctx := context.Background()
	top := topology.Default().WithPrefix(Prefix())
	for _, a := range adjust {
		a(&top)
	}
	snsc, sqsc := sns.NewFromConfig(e.AWS), sqs.NewFromConfig(e.AWS)
	ap, err := topology.Apply(ctx, snsc, sqsc, top)
	if err != nil {
		t.Fatalf("apply topology: %v", err)
	}
	t.Cleanup(func() {
		for _, q := range ap.Queues {
			_, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.URL)})
			_, _ = sqsc.DeleteQueue(ctx, &sqs.DeleteQueueInput{QueueUrl: aws.String(q.DLQURL)})
		}
		_, _ = snsc.DeleteTopic(ctx, &sns.DeleteTopicInput{TopicArn: aws.String(ap.TopicARN)})
	})
	return top, ap
}

// Eventually polls cond every 100ms until it returns nil or timeout passes,
// then fails the test with cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met after %s: %v", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// MailCount returns how many emails Mailpit holds whose To contains s.
func MailCount(ctx context.Context, s string) (int, error) { return mailpit.Count(ctx, MailpitURL, s) }
