package bench

import (
	"context"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
)

// count is one worker counter's increment: AWS requests by service and
// operation, or SMTP commands (service "SMTP") by command.
type count struct {
	service, name string
	n             float64
}

func (c count) addTo(m *metrics.Metrics) {
	if c.service == "Redis" {
		m.RedisRoundTrips.Add(c.n)
		return
	}
	if c.service == "SMTP" {
		m.SMTPCommands.WithLabelValues(c.name).Add(c.n)
		return
	}
	m.AWSRequests.WithLabelValues(c.service, c.name).Add(c.n)
}

// TestExchangesFromTheWorkersMetrics: the worker's /metrics text, parsed,
// sums its AWS requests by service (SQS, SNS; others only in the detail)
// and its SMTP commands, and the difference between two scrapes over the
// completed orders is the cost's exchanges per order.
func TestExchangesFromTheWorkersMetrics(t *testing.T) {
	tests := []struct {
		name                  string
		before, during        []count
		orders                int
		sqs, sns, smtp, redis float64
		detail                map[string]float64
	}{
		{
			name: "nothing counted yet, then nothing: zero, not missing", orders: 4,
		},
		{
			name:   "a pipeline's exchanges",
			before: []count{{"SQS", "ReceiveMessage", 10}, {"SNS", "ListTopics", 1}, {"SMTP", "EHLO", 1}, {"Redis", "", 7}},
			during: []count{
				{"SQS", "ReceiveMessage", 6}, {"SQS", "DeleteMessageBatch", 3}, {"SQS", "ChangeMessageVisibility", 1},
				{"SNS", "PublishBatch", 2}, {"Secrets Manager", "GetSecretValue", 1},
				{"SMTP", "EHLO", 1}, {"SMTP", "MAIL", 2}, {"SMTP", "RCPT", 2}, {"SMTP", "DATA", 2}, {"SMTP", "DATA_END", 2}, {"SMTP", "RSET", 1},
				{"Redis", "", 7},
			},
			orders: 2, sqs: 5, sns: 1, smtp: 5, redis: 3.5,
			detail: map[string]float64{
				"SQS ReceiveMessage": 3, "SQS DeleteMessageBatch": 1.5, "SQS ChangeMessageVisibility": 0.5,
				"SNS PublishBatch": 1, "Secrets Manager GetSecretValue": 0.5,
				"SMTP EHLO": 0.5, "SMTP MAIL": 1, "SMTP RCPT": 1, "SMTP DATA": 1, "SMTP DATA_END": 1, "SMTP RSET": 0.5,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			srv := httptest.NewServer(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
			defer srv.Close()
			scrape := scrapeMetrics(srv.URL)
			for _, c := range tt.before {
				c.addTo(m)
			}
			before := readExchanges(t.Context(), scrape)
			for _, c := range tt.during {
				c.addTo(m)
			}
			after := readExchanges(t.Context(), scrape)
			if !before.ok || !after.ok {
				t.Fatalf("scrapes read: %v, %v", before.ok, after.ok)
			}
			var c OrderCost
			c.setExchanges(before, after, tt.orders)
			if c.SQSCalls == nil || c.SNSCalls == nil || c.SMTPCommands == nil || c.RedisRoundTrips == nil {
				t.Fatalf("exchanges not set: %+v", c)
			}
			got := [4]float64{*c.SQSCalls, *c.SNSCalls, *c.SMTPCommands, *c.RedisRoundTrips}
			if want := [4]float64{tt.sqs, tt.sns, tt.smtp, tt.redis}; got != want {
				t.Errorf("SQS, SNS, SMTP, Redis per order = %v, want %v", got, want)
			}
			if diff := cmp.Diff(tt.detail, c.Exchanges); diff != "" {
				t.Errorf("exchanges per order (-want +got):\n%s", diff)
			}
		})
	}
}

// TestExchangesNotReadAreNotCounted: a run without a metrics source, or
// whose scrape fails, leaves the exchanges nil ("—"), never 0.
func TestExchangesNotReadAreNotCounted(t *testing.T) {
	srv := httptest.NewServer(promhttp.HandlerFor(metrics.New().Registry, promhttp.HandlerOpts{}))
	ok := readExchanges(t.Context(), scrapeMetrics(srv.URL))
	srv.Close()
	for _, tt := range []struct {
		name          string
		before, after exchangeCounts
	}{
		{"no source", readExchanges(t.Context(), nil), readExchanges(t.Context(), nil)},
		{"the last scrape failed", ok, readExchanges(t.Context(), scrapeMetrics(srv.URL))},
	} {
		var c OrderCost
		c.setExchanges(tt.before, tt.after, 10)
		if c.SQSCalls != nil || c.SNSCalls != nil || c.SMTPCommands != nil || c.RedisRoundTrips != nil || c.Exchanges != nil {
			t.Errorf("%s: exchanges set: %+v", tt.name, c)
		}
	}
}

func TestCommandsProcessed(t *testing.T) {
	tests := []struct {
		name, info string
		want       int64
		ok         bool
	}{
		{"INFO stats", "# Stats\r\ntotal_connections_received:12\r\ntotal_commands_processed:98765\r\ninstantaneous_ops_per_sec:3\r\n", 98765, true},
		{"missing", "# Stats\r\ntotal_connections_received:12\r\n", 0, false},
		{"not a number", "total_commands_processed:many\r\n", 0, false},
	}
	for _, tt := range tests {
		got, err := commandsProcessed(tt.info)
		if got != tt.want || (err == nil) != tt.ok {
			t.Errorf("%s: got %d, %v; want %d, ok %v", tt.name, got, err, tt.want, tt.ok)
		}
	}
}

// TestRedisCounterCountsTheServersCommands: the counter's reads of the
// local Redis differ by at least the commands sent between them (the
// server is shared: others may add some).
func TestRedisCounterCountsTheServersCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	ctx := context.Background()
	rc := openRedisCounter(testenv.RedisURL)
	if rc == nil {
		t.Fatalf("REDIS_URL %q not usable", testenv.RedisURL)
	}
	defer rc.close()
	opt, err := redis.ParseURL(testenv.RedisURL)
	if err != nil {
		t.Fatal(err)
	}
	client := redis.NewClient(opt)
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil { // connected before the count starts
		t.Fatal(err)
	}
	before, ok := rc.commands(ctx)
	if !ok {
		t.Fatal("INFO stats not read")
	}
	const pings = 25
	for range pings {
		if err := client.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}
	after, ok := rc.commands(ctx)
	if !ok {
		t.Fatal("INFO stats not read")
	}
	if after-before < pings {
		t.Errorf("total_commands_processed grew by %d over %d PINGs", after-before, pings)
	}
}

// TestMetricsAddrFromTheWorkersLog: the address is the one the worker
// logged it serves /metrics at; none logged, none.
func TestMetricsAddrFromTheWorkersLog(t *testing.T) {
	for _, tt := range []struct{ name, log, want string }{
		{"served", `{"level":"INFO","msg":"configuration"}` + "\n" +
			`{"level":"INFO","msg":"serving /metrics, /healthz and /readyz","addr":"127.0.0.1:41234"}` + "\n" +
			`{"level":"INFO","msg":"worker started"}` + "\n", "127.0.0.1:41234"},
		{"not served", `{"level":"INFO","msg":"worker started"}` + "\n", ""},
	} {
		path := filepath.Join(t.TempDir(), "worker.log")
		if err := os.WriteFile(path, []byte(tt.log), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := (&WorkerProc{logPath: path}).MetricsAddr(); got != tt.want {
			t.Errorf("%s: MetricsAddr() = %q, want %q", tt.name, got, tt.want)
		}
	}
}
