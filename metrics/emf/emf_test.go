package emf

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/metrics"
)

// clock is a settable time for the emitter.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// lockedBuffer collects the lines written from the emitter's goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.buf.String() }

func newEmitter(t *testing.T, m *metrics.Metrics, out *lockedBuffer, c *clock) *Emitter {
	t.Helper()
	e, err := New(m, Config{Namespace: "test-orderpipe", Handlers: []string{"billing", "inventory"}, Output: out, NowFunc: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// points parses every line of out, failing on one that breaks the EMF
// specification, and returns the points by "Name Dim=Value ...".
func points(t *testing.T, out string) map[string][]float64 {
	t.Helper()
	got := map[string][]float64{}
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		ps, err := Parse([]byte(l))
		if err != nil {
			t.Fatalf("not EMF: %v\n%s", err, l)
		}
		for _, p := range ps {
			got[key(p)] = append(got[key(p)], p.Values...)
		}
	}
	return got
}

func key(p Point) string {
	var k strings.Builder
	k.WriteString(p.Name)
	for _, d := range sortedKeys(p.Dimensions) {
		k.WriteString(" " + d + "=" + p.Dimensions[d])
	}
	return k.String()
}

// TestCountersAreWrittenAsDeltas: each interval's line holds what was
// counted in it; every reason of a dead letter adds to the handler's
// count; a listed handler that counted nothing is written with zeros.
func TestCountersAreWrittenAsDeltas(t *testing.T) {
	m := metrics.New()
	var out lockedBuffer
	c := &clock{now: time.Date(2026, 12, 1, 10, 0, 30, 0, time.UTC)}
	e := newEmitter(t, m, &out, c)

	m.Consumer("billing").Received(5)
	m.MessagesProcessed.WithLabelValues("billing").Add(4)
	m.MessagesDeadLettered.WithLabelValues("billing", "invalid_event").Inc()
	m.MessagesDeadLettered.WithLabelValues("billing", "permanent").Add(2)
	e.flush(c.Now())
	first := out.String()
	out.buf.Reset()
	m.Consumer("billing").Received(3)
	m.MessagesRetried.WithLabelValues("billing").Inc()
	e.flush(c.Now())

	want := map[string][]float64{
		"MessagesReceived Handler=billing": {5}, "MessagesProcessed Handler=billing": {4},
		"MessagesRetried Handler=billing": {0}, "MessagesDeadLettered Handler=billing": {3},
		"MessagesReceived Handler=inventory": {0}, "MessagesProcessed Handler=inventory": {0},
		"MessagesRetried Handler=inventory": {0}, "MessagesDeadLettered Handler=inventory": {0},
		"EmailDuplicateRisk": {0},
	}
	if diff := cmp.Diff(want, points(t, first)); diff != "" {
		t.Errorf("first interval (-want +got):\n%s", diff)
	}
	want["MessagesReceived Handler=billing"], want["MessagesProcessed Handler=billing"] = []float64{3}, []float64{0}
	want["MessagesRetried Handler=billing"], want["MessagesDeadLettered Handler=billing"] = []float64{1}, []float64{0}
	if diff := cmp.Diff(want, points(t, out.String())); diff != "" {
		t.Errorf("second interval (-want +got):\n%s", diff)
	}
}

// TestDuplicateRiskIsWrittenByCauseAndInTotal: the alarm watches the
// total, which is written every interval, zero or not.
func TestDuplicateRiskIsWrittenByCauseAndInTotal(t *testing.T) {
	m := metrics.New()
	var out lockedBuffer
	c := &clock{now: time.Now()}
	e := newEmitter(t, m, &out, c)
	m.EmailDuplicateRisk.WithLabelValues("unrecorded").Add(2)
	m.EmailDuplicateRisk.WithLabelValues("takeover").Inc()
	e.flush(c.Now())
	got := points(t, out.String())
	for k, v := range map[string]float64{"EmailDuplicateRisk": 3, "EmailDuplicateRisk Cause=unrecorded": 2, "EmailDuplicateRisk Cause=takeover": 1} {
		if !slices.Equal(got[k], []float64{v}) {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
}

// TestBreakerStateIsSampledEverySecond: the line holds every sample of
// the interval, so CloudWatch's Minimum over a minute is 0 unless the
// breaker was never closed in it.
func TestBreakerStateIsSampledEverySecond(t *testing.T) {
	m := metrics.New()
	var out lockedBuffer
	c := &clock{now: time.Now()}
	e := newEmitter(t, m, &out, c)
	db := m.BreakerState.WithLabelValues("database")
	m.BreakerState.WithLabelValues("redis").Set(0)
	for _, s := range []float64{0, 2, 1, 2, 2} {
		db.Set(s)
		e.sample()
	}
	e.flush(c.Now())
	got := points(t, out.String())
	if want := []float64{0, 2, 1, 2, 2}; !slices.Equal(got["BreakerState Breaker=database"], want) {
		t.Errorf("database samples %v, want %v", got["BreakerState Breaker=database"], want)
	}
	if want := []float64{0, 0, 0, 0, 0}; !slices.Equal(got["BreakerState Breaker=redis"], want) {
		t.Errorf("redis samples %v, want %v", got["BreakerState Breaker=redis"], want)
	}
	// The next interval starts empty; a flush before any sample takes one.
	out.buf.Reset()
	e.flush(c.Now())
	if got := points(t, out.String())["BreakerState Breaker=database"]; !slices.Equal(got, []float64{2}) {
		t.Errorf("an interval without samples wrote %v, want the state now [2]", got)
	}
}

// TestLatencyValuesFollowTheHistogram: at most 100 values per handler
// and interval, spread over the interval's observations so that their
// percentiles are the histogram's to within its buckets.
func TestLatencyValuesFollowTheHistogram(t *testing.T) {
	m := metrics.New()
	var out lockedBuffer
	c := &clock{now: time.Now()}
	e := newEmitter(t, m, &out, c)
	obs := m.Consumer("billing")
	for range 10 {
		obs.Settled("ok", 20*time.Millisecond)
	}
	e.flush(c.Now())
	got := points(t, out.String())["HandlerLatency Handler=billing"]
	if len(got) != 10 {
		t.Fatalf("10 observations gave %d values, want 10: %v", len(got), got)
	}
	for _, v := range got {
		if v <= 10 || v > 25 {
			t.Errorf("a 20ms observation became %vms, outside its bucket (10ms, 25ms]", v)
		}
	}

	// 980 fast and 20 slow ones (a retry outcome counts too): p50 in the
	// fast bucket, p99 in the slow one.
	out.buf.Reset()
	for range 980 {
		obs.Settled("ok", 7*time.Millisecond)
	}
	for range 20 {
		obs.Settled("retry", 2*time.Second)
	}
	e.flush(c.Now())
	got = points(t, out.String())["HandlerLatency Handler=billing"]
	if len(got) != MaxValues {
		t.Fatalf("1000 observations gave %d values, want %d", len(got), MaxValues)
	}
	slices.Sort(got)
	p50, p99 := got[49], got[98]
	if p50 <= 5 || p50 > 10 || p99 <= 1000 || p99 > 2500 {
		t.Errorf("p50 %vms (want in (5, 10]), p99 %vms (want in (1000, 2500])", p50, p99)
	}
	// An interval without observations writes no latency.
	out.buf.Reset()
	e.flush(c.Now())
	if v, ok := points(t, out.String())["HandlerLatency Handler=billing"]; ok {
		t.Errorf("an idle interval wrote latencies %v", v)
	}
}

// TestLinesAreStampedWithTheirIntervalAndAligned: Run writes at each
// multiple of the interval, stamped with the interval's start, and the
// last, partial interval when stopped.
func TestLinesAreStampedWithTheirIntervalAndAligned(t *testing.T) {
	m := metrics.New()
	var out lockedBuffer
	start := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Add(2500 * time.Millisecond)
	c := &clock{now: start}
	e, err := New(m, Config{Namespace: "test-orderpipe", Interval: 2 * time.Second, Output: &out, NowFunc: c.Now})
	if err != nil {
		t.Fatal(err)
	}
	stop := e.Start(t.Context())
	m.EmailDuplicateRisk.WithLabelValues("unrecorded").Inc()
	c.Add(2 * time.Second) // past the boundary at :04
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "\n") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond) // the emitter's ticker runs every second
	}
	stop()
	var stamps []time.Time
	for l := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		ps, err := Parse([]byte(l))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range ps {
			if p.Name == EmailDuplicateRisk && len(p.Dimensions) == 0 {
				stamps = append(stamps, p.Timestamp.UTC())
			}
		}
	}
	want := []time.Time{start.Truncate(time.Millisecond), start.Truncate(2 * time.Second).Add(2 * time.Second)}
	if diff := cmp.Diff(want, stamps); diff != "" {
		t.Errorf("timestamps of the intervals (-want +got):\n%s\n%s", diff, out.String())
	}
}

// blockingWriter never returns from Write until released.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

// TestStopIsBoundedWhenOutputBlocks: a stdout that does not drain holds
// up neither the worker's metrics nor its exit.
func TestStopIsBoundedWhenOutputBlocks(t *testing.T) {
	m := metrics.New()
	w := blockingWriter{release: make(chan struct{})}
	defer close(w.release)
	e, err := New(m, Config{Output: w, StopTimeout: 200 * time.Millisecond, Interval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	stop := e.Start(t.Context())
	for range 1000 {
		m.MessagesProcessed.WithLabelValues("billing").Inc() // the counters never wait on the emitter
	}
	began := time.Now()
	stop()
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("stop took %s with a blocked output, want about StopTimeout (200ms)", took)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"the defaults", Config{}, ""},
		{"a minute", Config{Namespace: "prod-orderpipe", Interval: time.Minute}, ""},
		{"too short", Config{Interval: 500 * time.Millisecond}, "Interval"},
		{"too long", Config{Interval: 2 * time.Minute}, "Interval"},
		{"AWS's namespace", Config{Namespace: "AWS/SQS"}, "Namespace"},
		{"too long a namespace", Config{Namespace: strings.Repeat("n", 256)}, "Namespace"},
		{"a control character", Config{Namespace: "a\nb"}, "Namespace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if got := fmt.Sprint(err); tt.wantErr == "" && err != nil || tt.wantErr != "" && !strings.Contains(got, tt.wantErr) {
				t.Errorf("Validate() = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
}

// TestParseRefusesWhatCloudWatchWould: the checker the tests read the
// lines with refuses what breaks the specification.
func TestParseRefusesWhatCloudWatchWould(t *testing.T) {
	ok := `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Handler"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"Handler":"billing","M":1}`
	if _, err := Parse([]byte(ok)); err != nil {
		t.Fatalf("a valid line refused: %v", err)
	}
	bad := map[string]string{
		"no _aws":             `{"M":1}`,
		"no timestamp":        `{"_aws":{"CloudWatchMetrics":[]},"M":1}`,
		"no dimension set":    `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[],"Metrics":[{"Name":"M"}]}]},"M":1}`,
		"a missing dimension": `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[["Handler"]],"Metrics":[{"Name":"M"}]}]},"M":1}`,
		"a missing value":     `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]}}`,
		"a string value":      `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":"1"}`,
		"a bad unit":          `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"M","Unit":"ms"}]}]},"M":1}`,
		"101 values":          `{"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"n","Dimensions":[[]],"Metrics":[{"Name":"M"}]}]},"M":[` + strings.TrimSuffix(strings.Repeat("1,", 101), ",") + `]}`,
	}
	for name, l := range bad {
		if _, err := Parse([]byte(l)); err == nil {
			t.Errorf("%s: accepted %s", name, l)
		}
	}
}

// TestRunStopsWithContext: Run returns once its context ends, after the
// last lines.
func TestRunStopsWithContext(t *testing.T) {
	var out lockedBuffer
	e, err := New(metrics.New(), Config{Output: &out})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	e.Run(ctx)
	if _, ok := points(t, out.String())["EmailDuplicateRisk"]; !ok {
		t.Errorf("no last lines after the context ended:\n%s", out.String())
	}
}
