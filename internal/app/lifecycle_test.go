package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/testenv"
)

var (
	buildOnce sync.Once
	workerBin string
	errBuild  error
)

// workerBinary builds cmd/worker once per test binary: the lifecycle tests
// signal real processes, as ECS does.
func workerBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "orderpipe-worker-bin-") //nolint:usetesting // built once for every test of the binary: it outlives the test that builds it
		if err != nil {
			errBuild = err
			return
		}
		workerBin = filepath.Join(dir, "worker")
		out, err := exec.CommandContext(t.Context(), "go", "build", "-o", workerBin, "github.com/orderpipe/orderpipe/cmd/worker").CombinedOutput()
		if err != nil {
			errBuild = fmt.Errorf("go build worker: %w\n%s", err, out)
		}
	})
	if errBuild != nil {
		t.Fatal(errBuild)
	}
	return workerBin
}

// proc is a worker process of the test's pipeline.
type proc struct {
	cmd  *exec.Cmd
	done chan error
	log  string
}

// startProcess starts a worker process on the test's topology, database and
// Redis prefix; extra are more VAR=value settings.
func (s *stack) startProcess(t *testing.T, name string, extra ...string) *proc {
	t.Helper()
	p := &proc{done: make(chan error, 1), log: filepath.Join(t.TempDir(), name+".log")}
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.CommandContext(t.Context(), workerBinary(t))
	p.cmd.Env = append(os.Environ(),
		"AWS_ENDPOINT_URL="+testenv.Endpoint, "AWS_REGION="+testenv.Region,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test",
		"ORDERPIPE_NAME_PREFIX="+s.prefix,
		"DATABASE_URL="+s.env.DBURL, "DB_MAX_CONNS=6",
		"REDIS_URL="+testenv.RedisURL, "REDIS_KEY_PREFIX=orderpipe-test:"+s.prefix,
		"SMTP_ADDR="+testenv.SMTPAddr,
		// Short leases, so that a killed worker's work is taken over within
		// the test's patience; production keeps the defaults.
		"SMTP_TIMEOUT=2s", "EMAIL_CLAIM_TTL=12s", "IDEMPOTENCY_LEASE=10s",
		"WORKER_WAIT_TIME=1s", "WORKER_SHUTDOWN_TIMEOUT=10s",
		"METRICS_ADDR=",
	)
	p.cmd.Env = append(p.cmd.Env, extra...)
	p.cmd.Stdout, p.cmd.Stderr = logFile, logFile
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The worker writes the log through its own descriptor; ours is never written.
	go func() { p.done <- p.cmd.Wait(); _ = logFile.Close() }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		exit := <-p.done
		if t.Failed() {
			b, err := os.ReadFile(p.log)
			t.Logf("%s exited (%v); log (%d bytes, %v), warnings and errors:\n%s", name, exit, len(b), err, warnings(b))
			if os.Getenv("ORDERPIPE_TEST_FULL_LOG") == "1" {
				t.Logf("%s", b)
			}
		}
	})
	return p
}

// startWithMetrics starts a worker process serving /metrics on a port of
// its own choosing (127.0.0.1:0) and returns the address it bound, read
// from its log. A port picked free beforehand could be taken by another
// process's connection before the worker binds it.
func (s *stack) startWithMetrics(t *testing.T, name string, extra ...string) (*proc, string) {
	t.Helper()
	p := s.startProcess(t, name, append([]string{"METRICS_ADDR=127.0.0.1:0"}, extra...)...)
	var addr string
	testenv.Eventually(t, 30*time.Second, func() error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			var rec struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving /metrics, /healthz and /readyz" && rec.Addr != "" {
				addr = rec.Addr
				return nil
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("%s exited before serving /metrics: %v\n%s", name, err, b)
		default:
		}
		return errors.New(name + " has not logged its /metrics address yet")
	})
	return p, addr
}

// warnings returns a log's warning and error lines, counted by message.
func warnings(log []byte) string {
	counts := map[string]int{}
	for line := range strings.SplitSeq(string(log), "\n") {
		if strings.Contains(line, `"level":"WARN"`) || strings.Contains(line, `"level":"ERROR"`) {
			msg := line
			if _, after, ok := strings.Cut(line, `"msg":"`); ok {
				msg = after
				if j := strings.IndexByte(msg, '"'); j >= 0 {
					msg = msg[:j]
				}
			}
			counts[msg]++
		}
	}
	var b strings.Builder
	for m, n := range counts {
		fmt.Fprintf(&b, "  %5d  %s\n", n, m)
	}
	return b.String()
}

func (s *stack) billed(t *testing.T) int64 {
	t.Helper()
	return s.queryInt(t, `SELECT count(*) FROM invoices WHERE order_id LIKE $1`, s.prefix+"%")
}

func (s *stack) waitBilled(t *testing.T, n int64) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		if got := s.billed(t); got < n {
			return fmt.Errorf("%d billed, waiting for %d", got, n)
		}
		return nil
	})
}

// assertExactlyOnce checks that each of the orders was billed, reserved
// and emailed once, and nothing is left in the queues or DLQs.
func (s *stack) assertExactlyOnce(t *testing.T, orders int) {
	t.Helper()
	s.assertOnce(t, orders, func() (int, error) { return 0, nil })
}

// assertOnce is assertExactlyOnce allowing extra emails, as many as
// mayRepeat says were sent again after a worker died in the window between
// the SMTP server's acceptance and the record (see package notification).
func (s *stack) assertOnce(t *testing.T, orders int, mayRepeat func() (int, error)) {
	t.Helper()
	testenv.Eventually(t, time.Minute, func() error {
		for h := range all3(0) {
			if got := s.queryInt(t, `SELECT count(*) FROM processed_events WHERE handler = $1 AND order_id LIKE $2`, h, s.prefix+"%"); got != int64(orders) {
				return fmt.Errorf("%s processed %d events, want %d", h, got, orders)
			}
		}
		return nil
	})
	waitQueuesEmptyWithin(t, s, time.Minute)
	like := s.prefix + "%"
	for _, c := range []struct{ name, query string }{
		{"invoices", `SELECT count(*) FROM invoices WHERE order_id LIKE $1`},
		{"stock movements", `SELECT count(*) FROM stock_movements WHERE order_id LIKE $1`},
		{"emails recorded", `SELECT count(*) FROM notifications WHERE order_id LIKE $1 AND status = 'sent'`},
	} {
		if n := s.queryInt(t, c.query, like); n != int64(orders) {
			t.Errorf("%s = %d, want %d", c.name, n, orders)
		}
	}
	var mails, repeats int
	testenv.Eventually(t, 30*time.Second, func() error {
		var err error
		if mails, err = testenv.MailCount(context.Background(), s.emailDomain()); err != nil {
			return err
		}
		if repeats, err = mayRepeat(); err != nil {
			return err
		}
		if mails < orders || mails > orders+repeats {
			return fmt.Errorf("emails in Mailpit = %d, want %d (+ at most %d sent again after a crash in the window)", mails, orders, repeats)
		}
		return nil
	})
	if repeats > 0 {
		t.Logf("%d emails for %d orders; %d claims of the dead worker were taken over (orderpipe_email_duplicate_risk_total)", mails, orders, repeats)
	}
}

func (s *stack) publishOrders(t *testing.T, n int, tag string) {
	t.Helper()
	evs := make([]events.Event, n)
	for i := range evs {
		evs[i] = s.placed(fmt.Sprintf("%s%d", tag, i), "", "TEE", 1+i%3)
	}
	s.publish(t, evs...)
}

// TestSIGKILLOfOneOfThreeWorkers kills one of three workers outright, as a
// spot interruption would: its in-flight messages come back when their
// visibility runs out and every order is still handled exactly once.
func TestSIGKILLOfOneOfThreeWorkers(t *testing.T) {
	t.Parallel()
	s := newStack(t, visibility(5)) // the killed worker's messages come back within seconds
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 100_000})
	const orders = 200
	var ps []*proc
	var survivors []string
	for i := range 3 {
		p, addr := s.startWithMetrics(t, fmt.Sprintf("worker-%d", i))
		ps = append(ps, p)
		if i > 0 {
			survivors = append(survivors, addr)
		}
	}
	s.publishOrders(t, orders, "kill")
	s.waitBilled(t, 20)
	if err := ps[0].cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("worker-0 killed at %d of %d orders billed", s.billed(t), orders)
	// Billing and inventory exactly once; email exactly once except an
	// email the dead worker had sent and not yet recorded (one database
	// round trip), which its successor sends again and counts.
	s.assertOnce(t, orders, func() (int, error) {
		n := 0.0
		for _, addr := range survivors {
			m, err := scrape(t.Context(), "http://"+addr+"/metrics")
			if err != nil {
				return 0, fmt.Errorf("scrape %s: %w", addr, err)
			}
			n += m[`orderpipe_email_duplicate_risk_total{cause="takeover"}`]
		}
		return int(n), nil
	})
}

// TestMetricsCountWhatWasPublished scrapes a worker's /metrics after 20
// good orders and 3 poison messages: the counters say exactly that.
func TestMetricsCountWhatWasPublished(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "TEE", Name: "T-shirt", Price: 2500, Stock: 1000})
	_, addr := s.startWithMetrics(t, "worker")
	s.publishOrders(t, 20, "m")
	poison := []events.RawMessage{
		{Body: `{"truncated":`, EventType: string(events.OrderPlaced), SchemaVersion: 1},
		{Body: `[]`, EventType: string(events.OrderPlaced), SchemaVersion: 1},
		{Body: strings.Replace(mustJSON(t, s.placed("p", "", "TEE", 1)), `"schema_version":1`, `"schema_version":9`, 1), EventType: string(events.OrderPlaced), SchemaVersion: 1},
	}
	if _, err := s.pub.PublishRaw(context.Background(), poison); err != nil {
		t.Fatal(err)
	}
	s.waitProcessed(t, all3(20), 20)

	want := map[string]float64{}
	for _, h := range []string{"billing", "inventory", "notification"} {
		want[`orderpipe_messages_processed_total{handler="`+h+`"}`] = 20
		want[`orderpipe_messages_dead_lettered_total{handler="`+h+`",reason="malformed_json"}`] = 2
		want[`orderpipe_messages_dead_lettered_total{handler="`+h+`",reason="unsupported_schema_version"}`] = 1
		want[`orderpipe_messages_received_total{handler="`+h+`"}`] = 23
		want[`orderpipe_messages_in_flight{handler="`+h+`"}`] = 0
	}
	want[`orderpipe_emails_sent_total{event_type="order.placed"}`] = 20
	var got map[string]float64
	testenv.Eventually(t, 10*time.Second, func() error {
		var err error
		if got, err = scrape(t.Context(), "http://"+addr+"/metrics"); err != nil {
			return err
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		return nil
	})
	for _, path := range []string{"/healthz", "/readyz"} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s = %s, want 200", path, resp.Status)
		}
	}
}

// scrape reads a Prometheus text exposition into series -> value.
func scrape(ctx context.Context, url string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, errors.New("metrics: " + resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out, sc.Err()
}

// TestRedriveOfAFixedMessage: an order for a SKU the catalog lacks is
// dead-lettered by every handler; once the product exists, `dlq redrive`
// sends the messages back and the order goes through.
func TestRedriveOfAFixedMessage(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.startWorker(t)
	ev := s.placed("r1", "", "LAMP", 2)
	s.publish(t, ev)
	sqsc := sqs.NewFromConfig(s.env.AWS)
	ctx := context.Background()
	for _, q := range s.ap.Queues {
		testenv.Eventually(t, 20*time.Second, func() error {
			letters, err := dlq.List(ctx, sqsc, q.DLQURL, 10)
			if err != nil {
				return err
			}
			if len(letters) != 1 || letters[0].Reason != string(events.ReasonUnknownSKU) || letters[0].Attributes["event_type"] != "order.placed" {
				return fmt.Errorf("%s DLQ holds %+v, want one unknown_sku letter with its attributes", q.Handler, letters)
			}
			return nil
		})
	}

	s.addProducts(t, catalog.Product{SKU: "LAMP", Name: "Lamp", Price: 4999, Stock: 10}) // the fix
	for _, q := range s.ap.Queues {
		n, err := dlq.Redrive(ctx, sqsc, q.DLQURL, q.URL, func(l dlq.Letter) bool { return l.Reason == string(events.ReasonUnknownSKU) })
		if err != nil || n != 1 {
			t.Fatalf("redrive %s: moved %d, err %v; want 1", q.Handler, n, err)
		}
	}
	s.waitProcessed(t, all3(1), 1)
	waitQueuesEmpty(t, s)
	if total := s.queryInt(t, `SELECT total_cents FROM invoices WHERE order_id = $1`, ev.Order.OrderID); total != 2*4999 {
		t.Errorf("invoice total = %d, want %d", total, 2*4999)
	}
}
