package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"
)

// The worker's metrics the exchanges per order are read from
// (metrics.Metrics AWSRequests and SMTPCommands), and the SDK's service ids.
const (
	awsRequestsMetric  = "orderpipe_aws_requests_total"
	smtpCommandsMetric = "orderpipe_smtp_commands_total"
	redisTripsMetric   = "orderpipe_redis_round_trips_total"
	serviceSQS         = "SQS"
	serviceSNS         = "SNS"
)

// familiesFunc reads the metrics of the process that runs a run's
// handlers: the worker's /metrics, or the benchmark's own registry when
// the handlers run in it.
type familiesFunc func(ctx context.Context) (map[string]*dto.MetricFamily, error)

// scrapeMetrics reads the Prometheus text at url (a worker's /metrics).
func scrapeMetrics(url string) familiesFunc {
	return func(ctx context.Context) (map[string]*dto.MetricFamily, error) {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("bench: scrape %s: %w", url, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("bench: scrape %s: %s", url, resp.Status)
		}
		return parseMetrics(resp.Body)
	}
}

// parseMetrics parses the Prometheus text exposition format.
func parseMetrics(r io.Reader) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("bench: parse metrics: %w", err)
	}
	return fams, nil
}

// gatherMetrics reads an in-process registry (the handlers run in the
// benchmark's process).
func gatherMetrics(g prometheus.Gatherer) familiesFunc {
	return func(context.Context) (map[string]*dto.MetricFamily, error) {
		fams, err := g.Gather()
		if err != nil {
			return nil, fmt.Errorf("bench: gather metrics: %w", err)
		}
		out := make(map[string]*dto.MetricFamily, len(fams))
		for _, f := range fams {
			out[f.GetName()] = f
		}
		return out, nil
	}
}

// exchangeCounts are a process's cumulative network exchanges, from its
// metrics: AWS requests (every attempt) by service, SMTP commands, and
// each by operation or command ("SQS ReceiveMessage", "SMTP RCPT").
type exchangeCounts struct {
	sqs, sns, smtp, redis float64
	detail                map[string]float64
	ok                    bool
}

// countExchanges sums fams' AWS requests by service and SMTP commands. A
// process that has made none exports no series: its counts are 0.
func countExchanges(fams map[string]*dto.MetricFamily) exchangeCounts {
	c := exchangeCounts{detail: map[string]float64{}, ok: true}
	for _, m := range fams[awsRequestsMetric].GetMetric() {
		service, op := label(m, "service"), label(m, "operation")
		v := m.GetCounter().GetValue()
		switch service {
		case serviceSQS:
			c.sqs += v
		case serviceSNS:
			c.sns += v
		}
		c.detail[service+" "+op] += v
	}
	for _, m := range fams[smtpCommandsMetric].GetMetric() {
		v := m.GetCounter().GetValue()
		c.smtp += v
		c.detail["SMTP "+label(m, "command")] += v
	}
	for _, m := range fams[redisTripsMetric].GetMetric() {
		c.redis += m.GetCounter().GetValue()
	}
	return c
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// readExchanges reads the counts from read, or none (ok false) when there
// is nothing to read or it fails: the run's cost then shows them as not
// counted.
func readExchanges(ctx context.Context, read familiesFunc) exchangeCounts {
	if read == nil {
		return exchangeCounts{}
	}
	fams, err := read(ctx)
	if err != nil {
		return exchangeCounts{}
	}
	return countExchanges(fams)
}

// setExchanges sets c's exchanges per order from the counts at the start and
// the end of a run of n completed orders; it leaves them nil (not counted)
// unless both were read.
func (c *OrderCost) setExchanges(before, after exchangeCounts, n int) {
	if !before.ok || !after.ok || n == 0 {
		return
	}
	per := func(a, b float64) *float64 { v := (a - b) / float64(n); return &v }
	c.SQSCalls, c.SNSCalls, c.SMTPCommands = per(after.sqs, before.sqs), per(after.sns, before.sns), per(after.smtp, before.smtp)
	c.RedisRoundTrips = per(after.redis, before.redis)
	for k, v := range after.detail {
		if d := v - before.detail[k]; d > 0 {
			if c.Exchanges == nil {
				c.Exchanges = map[string]float64{}
			}
			c.Exchanges[k] = d / float64(n)
		}
	}
}

// redisCounter reads a Redis server's total_commands_processed.
type redisCounter struct {
	c *redis.Client
}

// openRedisCounter connects to the Redis at rawURL, or returns nil when
// there is none to read (no URL, or not one go-redis parses).
func openRedisCounter(rawURL string) *redisCounter {
	if rawURL == "" {
		return nil
	}
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil
	}
	// One connection, no client name or library info sent: the reads
	// add as few commands to the count as they can (one INFO each).
	opt.PoolSize, opt.DisableIdentity = 1, true
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = 5*time.Second, 5*time.Second, 5*time.Second
	return &redisCounter{c: redis.NewClient(opt)}
}

// commands returns the server's total_commands_processed, and false when
// it cannot be read.
func (r *redisCounter) commands(ctx context.Context) (int64, bool) {
	if r == nil {
		return 0, false
	}
	info, err := r.c.Info(ctx, "stats").Result()
	if err != nil {
		return 0, false
	}
	n, err := commandsProcessed(info)
	return n, err == nil
}

func (r *redisCounter) close() {
	if r != nil {
		_ = r.c.Close()
	}
}

// commandsProcessed reads total_commands_processed from INFO's text.
func commandsProcessed(info string) (int64, error) {
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "total_commands_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("bench: redis total_commands_processed %q: %w", v, err)
			}
			return n, nil
		}
	}
	return 0, errors.New("bench: redis INFO stats has no total_commands_processed")
}
