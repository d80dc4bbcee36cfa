package lambdaharness_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/google/uuid"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/lambdaharness"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/mailer"
	"github.com/orderpipe/orderpipe/store"
	"github.com/orderpipe/orderpipe/store/redisstore"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// TestMain routes go-redis's own lines (a dial refused while a test keeps
// Redis down) to the tests' logger: quiet unless ORDERPIPE_TEST_LOG=1.
func TestMain(m *testing.M) {
	redisstore.RouteRedisLog(testenv.Logger())
	os.Exit(m.Run())
}

// The tests of this package run the worker's integration scenarios
// (internal/app's exactly-once, dead-letter and promotion tests) through
// the functions, behind the harness's event source mappings, on the real
// local stack (testenv). stack is internal/app's test stack, trimmed to
// what these need.
type stack struct {
	env    *testenv.Env
	prefix string
	top    topology.Topology
	ap     topology.Applied
	pub    *events.Publisher
	sqs    *sqs.Client
}

func newStack(t *testing.T) *stack {
	t.Helper()
	env := testenv.Open(t, "lambda")
	top, ap := env.Topology(t)
	pub, err := events.NewPublisher(sns.NewFromConfig(env.AWS), events.PublisherConfig{TopicARN: ap.TopicARN})
	if err != nil {
		t.Fatal(err)
	}
	return &stack{env: env, prefix: strings.TrimSuffix(top.Topic, "orders"), top: top, ap: ap, pub: pub, sqs: sqs.NewFromConfig(env.AWS)}
}

// functionConfig is the test's function configuration: as cmd/lambda
// builds it, on the local stack, with two connections per environment and
// a 30 s function timeout. The start margin (10 s) is what an accepted
// email's record has left at worst, when its message started last: it
// covers the tests' database outages (6 s and the breaker's probe), as a
// deployment's must cover its failovers (README, "On AWS Lambda").
func (s *stack) functionConfig(logger *slog.Logger) lambdaharness.PipelineConfig {
	return lambdaharness.PipelineConfig{
		Function: app.FunctionConfig{
			App: app.Config{
				AWS:      s.env.AWS,
				Topology: s.top,
				Store:    store.Config{URL: s.env.DBURL, MaxConns: 2},
				Redis:    redisstore.Config{URL: testenv.RedisURL, KeyPrefix: "orderpipe-test:" + s.prefix},
				SMTP:     mailer.Config{Addr: testenv.SMTPAddr},
				Consumer: worker.Config{Redelivery: worker.ExponentialRedelivery{Base: time.Second, Max: 2 * time.Second}},
				Logger:   logger,
			},
			Batch: worker.BatchConfig{Config: worker.Config{MaxInFlight: 10}, StartMargin: 10 * time.Second, SettleMargin: time.Second, GateWait: 500 * time.Millisecond},
		},
		ESM: lambdaharness.Config{BatchSize: 10, MaxConcurrency: 2, Timeout: 30 * time.Second, WaitTime: time.Second, Logger: logger},
	}
}

// startFunctions runs the three functions behind their mappings until the
// test ends; opts adjust the configuration. The functions' warnings (every
// line with ORDERPIPE_TEST_LOG=1) are kept for the report of a failed test.
func (s *stack) startFunctions(t *testing.T, opts ...func(*lambdaharness.PipelineConfig)) (*lambdaharness.Pipeline, *lockedBuffer) {
	t.Helper()
	logged := &lockedBuffer{}
	logger := slog.New(slog.NewJSONHandler(logged, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if os.Getenv("ORDERPIPE_TEST_LOG") == "1" {
		logger = testenv.Logger()
	}
	cfg := s.functionConfig(logger)
	for _, o := range opts {
		o(&cfg)
	}
	p, err := lambdaharness.StartPipeline(context.Background(), cfg, s.ap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("functions: %v", err)
		}
		t.Logf("event source mappings: %+v", p.Stats())
		if t.Failed() {
			t.Logf("function log, the last lines:\n%s", lastLines(logged.bytes(), 25))
		}
	})
	return p, logged
}

// lockedBuffer is the functions' log, written from many goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.buf.Bytes())
}

// lines returns the log lines containing s.
func (l *lockedBuffer) lines(s string) []string {
	var out []string
	for line := range strings.SplitSeq(string(l.bytes()), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

func lastLines(log []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(log)), "\n")
	lines = lines[max(len(lines)-n, 0):]
	for i, l := range lines {
		if len(l) > 500 {
			lines[i] = l[:500] + "…"
		}
	}
	return strings.Join(lines, "\n")
}

func (s *stack) sku(name string) events.SKU { return events.SKU(s.prefix + name) }

func (s *stack) addProducts(t *testing.T, db *store.DB, ps ...catalog.Product) {
	t.Helper()
	for _, p := range ps {
		_, err := db.Pool().Exec(context.Background(),
			`INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, $2, $3, $4)`,
			string(s.sku(string(p.SKU))), p.Name, int64(p.Price), p.Stock)
		if err != nil {
			t.Fatalf("add product %s: %v", p.SKU, err)
		}
	}
}

func (s *stack) emailDomain() string { return strings.TrimSuffix(s.prefix, "-") + ".example.com" }

// placed builds an order.placed event of this test: items alternate SKU
// name and quantity.
func (s *stack) placed(orderID string, items ...any) events.Event {
	o := events.Order{
		OrderID:  s.prefix + orderID,
		Customer: events.Customer{ID: "cus-" + orderID, Email: orderID + "@" + s.emailDomain(), Name: "Test " + orderID},
		Currency: "USD",
	}
	for i := 0; i+1 < len(items); i += 2 {
		sku, _ := items[i].(string)
		qty, _ := items[i+1].(int)
		o.Items = append(o.Items, events.Item{SKU: s.sku(sku), Quantity: qty})
	}
	return events.Event{EventID: events.EventID(uuid.NewString()), EventType: events.OrderPlaced,
		SchemaVersion: events.SchemaVersion, OccurredAt: time.Now().UTC(), Order: o}
}

func (s *stack) publish(t *testing.T, evs ...events.Event) {
	t.Helper()
	if n, err := s.pub.Publish(context.Background(), evs); err != nil || n != len(evs) {
		t.Fatalf("published %d of %d: %v", n, len(evs), err)
	}
}

func queryInt(t *testing.T, db *store.DB, q string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := db.Pool().QueryRow(context.Background(), q, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}

// all3 is "n events for each handler".
func all3(n int64) map[string]int64 {
	return map[string]int64{"billing": n, "inventory": n, "notification": n}
}

// waitProcessed waits until each handler has processed want events of this
// test's orders and Mailpit holds mails emails for its domain.
func (s *stack) waitProcessed(t *testing.T, db *store.DB, timeout time.Duration, want map[string]int64, mails int) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		for h, n := range want {
			got := queryInt(t, db, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2`, h, s.prefix+"%")
			if got != n {
				return fmt.Errorf("%s processed %d events, want %d", h, got, n)
			}
		}
		got, err := testenv.MailCount(context.Background(), s.emailDomain())
		if err != nil {
			return err
		}
		if got != mails {
			return fmt.Errorf("mailpit holds %d emails for %s, want %d", got, s.emailDomain(), mails)
		}
		return nil
	})
}

// waitQueuesEmpty waits until the test's queues and DLQs hold nothing.
func (s *stack) waitQueuesEmpty(t *testing.T, timeout time.Duration) {
	t.Helper()
	testenv.Eventually(t, timeout, func() error {
		for _, q := range s.ap.Queues {
			for _, url := range []string{q.URL, q.DLQURL} {
				if n, err := topology.Depth(context.Background(), s.sqs, url); err != nil || n != 0 {
					return fmt.Errorf("%s holds %d messages (%w)", url, n, err)
				}
			}
		}
		return nil
	})
}

// deadLetter is a message read from a DLQ.
type deadLetter struct {
	body  string
	attrs map[string]string
}

// drainLetters receives n messages from a DLQ (each once, by id), deletes
// them and returns them, within 30 s.
func (s *stack) drainLetters(t *testing.T, dlqURL string, n int) []deadLetter {
	t.Helper()
	ctx := context.Background()
	seen := map[string]deadLetter{}
	testenv.Eventually(t, 30*time.Second, func() error {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		out, err := s.sqs.ReceiveMessage(rctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(dlqURL), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1,
			MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return fmt.Errorf("receive from %s: %w", dlqURL, err)
		}
		for _, m := range out.Messages {
			l := deadLetter{body: aws.ToString(m.Body), attrs: map[string]string{}}
			for k, v := range m.MessageAttributes {
				l.attrs[k] = aws.ToString(v.StringValue)
			}
			seen[aws.ToString(m.MessageId)] = l
			_, _ = s.sqs.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(dlqURL), ReceiptHandle: m.ReceiptHandle})
		}
		if len(seen) < n {
			return fmt.Errorf("%d of %d dead letters so far", len(seen), n)
		}
		return nil
	})
	out := make([]deadLetter, 0, len(seen))
	for _, l := range seen {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b deadLetter) int { return strings.Compare(a.body, b.body) })
	return out
}
