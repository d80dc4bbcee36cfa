package app_test

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/deploy"
	"github.com/orderpipe/orderpipe/events"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/metrics/emf"
)

// shippedMonitoring is what the shipped stack expects of the worker's EMF
// lines (deploy.RenderSample): the namespace its task definition sets, and
// every metric of that namespace its alarms and dashboard read.
func shippedMonitoring(t *testing.T) (namespace string, read []deploy.Metric) {
	t.Helper()
	d, err := deploy.RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := d.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	c, err := pipe.Container(deploy.WorkerTaskDefinition, deploy.WorkerContainer)
	if err != nil {
		t.Fatal(err)
	}
	namespace = c.Env["METRICS_EMF_NAMESPACE"]
	if c.Env["METRICS_EMF"] != "true" || namespace == "" {
		t.Fatalf("the shipped task has METRICS_EMF=%q METRICS_EMF_NAMESPACE=%q", c.Env["METRICS_EMF"], namespace)
	}
	all, err := pipe.MonitoredMetrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range all {
		if m.Namespace == namespace {
			read = append(read, m)
		}
	}
	if len(read) == 0 {
		t.Fatalf("no alarm or widget reads namespace %s", namespace)
	}
	return namespace, read
}

// emitted is what a worker's EMF lines held: every point, and the sum of
// each series' values, by "Name{Dim=Value,...}".
type emitted struct {
	lines  int
	points []emf.Point
	sums   map[string]float64
}

func seriesOf(name string, dims map[string]string) string {
	return deploy.Metric{Name: name, Dimensions: dims}.String()
}

// readEMF parses every line of out with the specification's rules,
// failing the test on one that breaks them or is in another namespace.
func readEMF(t *testing.T, out string, namespace string) emitted {
	t.Helper()
	e := emitted{sums: map[string]float64{}}
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if l == "" {
			continue
		}
		ps, err := emf.Parse([]byte(l))
		if err != nil {
			t.Fatalf("a line that is not valid EMF: %v\n%s", err, l)
		}
		e.lines++
		for _, p := range ps {
			if p.Namespace != namespace {
				t.Fatalf("a point in namespace %q, want %q: %s", p.Namespace, namespace, l)
			}
			e.points = append(e.points, p)
			for _, v := range p.Values {
				e.sums[seriesOf(p.Name, p.Dimensions)] += v
			}
		}
	}
	return e
}

// TestEMFLinesFeedTheAlarmsAndTheDashboard runs a worker as the shipped
// task does (METRICS_EMF on, the task's namespace; a 1s interval to keep
// the test short) through a run of orders and a poison message, and reads
// its EMF lines as CloudWatch would: every line is valid EMF; the counters'
// deltas add up to what the worker counted and to the orders published;
// latencies and breaker states are there; and every metric and dimension
// set the stack's alarms and dashboard read is among the emitted, so no
// alarm watches a metric the worker never writes.
func TestEMFLinesFeedTheAlarmsAndTheDashboard(t *testing.T) {
	t.Parallel()
	namespace, read := shippedMonitoring(t)
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 1000})
	m := metrics.New()
	var out lockedBuffer
	s.startWorker(t, func(c *app.Config) {
		c.Metrics = m
		c.EMF = &emf.Config{Namespace: namespace, Interval: time.Second, Output: &out}
	})

	// Two waves, the second after the first is in the lines: the counters
	// are written as deltas over several intervals.
	const wave, orders = 6, 12
	handlers := []string{"billing", "notification", "inventory"}
	var e emitted
	linesCount := func(processed, deadLettered float64) func() error {
		return func() error {
			e = readEMF(t, string(out.bytes()), namespace)
			for _, h := range handlers {
				dims := map[string]string{emf.DimHandler: h}
				if got := e.sums[seriesOf(emf.MessagesProcessed, dims)]; got != processed {
					return fmt.Errorf("the lines count %v messages processed by %s, want %v", got, h, processed)
				}
				if got := e.sums[seriesOf(emf.MessagesDeadLettered, dims)]; got != deadLettered {
					return fmt.Errorf("the lines count %v dead-lettered by %s, want %v", got, h, deadLettered)
				}
			}
			return nil
		}
	}
	for i := range orders {
		if i == wave {
			s.waitProcessed(t, all3(wave), wave)
			testenv.Eventually(t, 30*time.Second, linesCount(wave, 0))
		}
		s.publish(t, s.placed(fmt.Sprintf("emf%d", i), "", "MUG", 1+i%3))
	}
	poison := []events.RawMessage{{Body: "not json at all", EventType: string(events.OrderPlaced), SchemaVersion: 1}}
	if _, err := s.pub.PublishRaw(context.Background(), poison); err != nil {
		t.Fatal(err)
	}
	s.waitProcessed(t, all3(orders), orders)
	testenv.Eventually(t, 30*time.Second, linesCount(orders, 1))

	// What the lines add up to is what the worker counted.
	for _, h := range handlers {
		dims := map[string]string{emf.DimHandler: h}
		for name, want := range map[string]float64{
			emf.MessagesReceived: testutil.ToFloat64(m.MessagesReceived.WithLabelValues(h)),
			emf.MessagesRetried:  testutil.ToFloat64(m.MessagesRetried.WithLabelValues(h)),
		} {
			if got := e.sums[seriesOf(name, dims)]; got != want {
				t.Errorf("%s: the lines add up to %v, the worker counted %v", seriesOf(name, dims), got, want)
			}
		}
		if n := e.sums[seriesOf(emf.MessagesReceived, dims)]; n < orders+1 {
			t.Errorf("%s received %v messages by the lines, want at least %d", h, n, orders+1)
		}
		var latencies []float64
		for _, p := range e.points {
			if p.Name == emf.HandlerLatency && p.Dimensions[emf.DimHandler] == h {
				latencies = append(latencies, p.Values...)
			}
		}
		if len(latencies) < orders || len(latencies) > orders+1 || latencies[0] < 0 {
			t.Errorf("%s: %d latency values (%v), want one per settled message (%d or %d), in milliseconds", h, len(latencies), latencies, orders, orders+1)
		}
	}
	for _, b := range []string{"database", "redis", "smtp", "sns"} {
		series := seriesOf(emf.BreakerState, map[string]string{emf.DimBreaker: b})
		if got, ok := e.sums[series]; !ok || got != 0 {
			t.Errorf("%s: summed %v (written %v), want written and closed throughout", series, got, ok)
		}
	}
	if got, ok := e.sums[seriesOf(emf.EmailDuplicateRisk, nil)]; !ok || got != 0 {
		t.Errorf("EmailDuplicateRisk total: %v (written %v), want written, 0", got, ok)
	}

	// Every metric the alarms and the dashboard read is written.
	written := map[string]bool{}
	for _, p := range e.points {
		written[seriesOf(p.Name, p.Dimensions)] = true
	}
	for _, r := range read {
		if !written[seriesOf(r.Name, r.Dimensions)] {
			t.Errorf("%s (read by %s) is never written by the worker; it writes %v", r, r.From, sortedSeries(written))
		}
	}
	t.Logf("%d EMF lines, %d points; the alarms and the dashboard read %d series of the worker's, all written. A line of each kind:", e.lines, len(e.points), len(read))
	shown := map[string]bool{}
	for l := range strings.SplitSeq(strings.TrimSpace(string(out.bytes())), "\n") {
		ps, _ := emf.Parse([]byte(l))
		if len(ps) == 0 || sumValues(ps) == 0 && ps[0].Name != emf.EmailDuplicateRisk && ps[0].Name != emf.BreakerState {
			continue
		}
		kind := ps[0].Name + strings.Join(slices.Sorted(maps.Keys(ps[0].Dimensions)), ",")
		if !shown[kind] {
			shown[kind] = true
			t.Log(l)
		}
	}
}

func sumValues(ps []emf.Point) float64 {
	n := 0.0
	for _, p := range ps {
		for _, v := range p.Values {
			n += v
		}
	}
	return n
}

func sortedSeries(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// shippedAlarm is one of the stack's alarms on the worker's own metrics,
// as the sample deployment renders it.
type shippedAlarm struct {
	metric    deploy.Metric
	op        string
	threshold float64
}

func loadShippedAlarm(t *testing.T, logical string) shippedAlarm {
	t.Helper()
	d, err := deploy.RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	pipe, err := d.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	ms, err := pipe.AlarmMetrics(logical)
	if err != nil || len(ms) != 1 {
		t.Fatalf("alarm %s reads %v (%v), want one metric", logical, ms, err)
	}
	p, err := pipe.Properties(logical)
	if err != nil {
		t.Fatal(err)
	}
	var threshold float64
	if _, err := fmt.Sscan(fmt.Sprint(p.Get("Threshold")), &threshold); err != nil {
		t.Fatalf("alarm %s threshold %v: %v", logical, p.Get("Threshold"), err)
	}
	return shippedAlarm{metric: ms[0], op: p.String("ComparisonOperator"), threshold: threshold}
}

// breaches applies the alarm's statistic and comparison to one period's
// values, as CloudWatch does to the values the lines carried.
func (a shippedAlarm) breaches(t *testing.T, values []float64) bool {
	t.Helper()
	var v float64
	switch a.metric.Stat {
	case "Minimum":
		v = slices.Min(values)
	case "Maximum":
		v = slices.Max(values)
	case "Sum":
		v = sumValues([]emf.Point{{Values: values}})
	default:
		t.Fatalf("statistic %s: add it here", a.metric.Stat)
	}
	switch a.op {
	case "GreaterThanOrEqualToThreshold":
		return v >= a.threshold
	case "GreaterThanThreshold":
		return v > a.threshold
	}
	t.Fatalf("comparison %s: add it here", a.op)
	return false
}

// periods returns the values of the alarm's metric in each interval's
// line, in order.
func (a shippedAlarm) periods(e emitted) [][]float64 {
	var out [][]float64
	for _, p := range e.points {
		if p.Name == a.metric.Name && maps.Equal(p.Dimensions, a.metric.Dimensions) {
			out = append(out, p.Values)
		}
	}
	return out
}

// TestDatabaseOutageMeetsTheBreakerAlarm: a worker whose database is
// unreachable (DATABASE_URL at a port nobody listens on) opens its
// database breaker on the first orders and keeps it from closing; its EMF
// lines then meet the stack's DatabaseBreakerAlarm condition (the alarm's
// own statistic, comparison and threshold, applied to each interval's
// samples) interval after interval. A healthy worker's lines never meet it
// (checked on a run of orders here too).
func TestDatabaseOutageMeetsTheBreakerAlarm(t *testing.T) {
	t.Parallel()
	namespace, _ := shippedMonitoring(t)
	alarm := loadShippedAlarm(t, "DatabaseBreakerAlarm")
	if alarm.metric.Name != emf.BreakerState || alarm.metric.Dimensions[emf.DimBreaker] != "database" {
		t.Fatalf("DatabaseBreakerAlarm watches %s", alarm.metric)
	}
	run := func(t *testing.T, dbDown bool, orders int) (*stack, *lockedBuffer) {
		t.Helper()
		s := newStack(t)
		s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1299, Stock: 1000})
		var out lockedBuffer
		s.startWorker(t, func(c *app.Config) {
			if dbDown {
				c.Store.URL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orderpipe?sslmode=disable", testenv.FreePort(t))
			}
			c.EMF = &emf.Config{Namespace: namespace, Interval: time.Second, Output: &out}
		})
		for i := range orders {
			s.publish(t, s.placed(fmt.Sprintf("down%d", i), "", "MUG", 1))
		}
		return s, &out
	}

	t.Run("database down", func(t *testing.T) {
		t.Parallel()
		_, out := run(t, true, 5)
		const consecutive = 5
		testenv.Eventually(t, time.Minute, func() error {
			ps := alarm.periods(readEMF(t, string(out.bytes()), namespace))
			n := 0
			for _, vs := range ps {
				if alarm.breaches(t, vs) {
					n++
				} else {
					n = 0
				}
			}
			if n < consecutive {
				return fmt.Errorf("the last %d intervals meet the alarm's condition, want %d in a row (%v)", n, consecutive, ps)
			}
			t.Logf("database down: the lines' %s per interval: %v", alarm.metric, ps)
			return nil
		})
	})
	t.Run("database up", func(t *testing.T) {
		t.Parallel()
		s, out := run(t, false, 5)
		s.waitProcessed(t, all3(5), 5)
		var ps [][]float64
		testenv.Eventually(t, 30*time.Second, func() error {
			if ps = alarm.periods(readEMF(t, string(out.bytes()), namespace)); len(ps) < 3 {
				return fmt.Errorf("%d intervals written, want 3", len(ps))
			}
			return nil
		})
		for _, vs := range ps {
			if alarm.breaches(t, vs) {
				t.Errorf("a healthy worker's interval %v meets the alarm's condition", vs)
			}
		}
	})
}
