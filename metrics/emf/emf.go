// Package emf writes a worker's metrics as CloudWatch embedded metric
// format (EMF) lines: JSON log events with an "_aws" member, from which
// CloudWatch Logs extracts metrics. On ECS the worker's stdout goes to
// CloudWatch Logs through the awslogs driver, so the lines become CloudWatch
// metrics with no collector, no sidecar and no cloudwatch:PutMetricData.
//
// The emitter reads the worker's own metrics (the injected metrics.Metrics,
// never a global registry) and writes only the few that the stack's alarms
// and dashboard use (Catalogue), with bounded dimensions: handler, breaker
// and cause names, never event data. Every Interval, aligned to the wall
// clock, it writes one line per handler, breaker and duplicate-risk cause:
//
//	metric               dimensions  unit          value
//	MessagesReceived     Handler     Count         received in the interval (a delta)
//	MessagesProcessed    Handler     Count         handled and deleted in the interval
//	MessagesRetried      Handler     Count         handed back for a later retry in the interval
//	MessagesDeadLettered Handler     Count         sent to the DLQ by the worker in the interval, every reason
//	HandlerLatency       Handler     Milliseconds  up to 100 values: the interval's handler durations, every outcome
//	BreakerState         Breaker     None          the breaker's state (0 closed, 1 half-open, 2 open) once a second
//	EmailDuplicateRisk   Cause       Count         emails that may arrive twice, in the interval, by cause
//	EmailDuplicateRisk   (none)      Count         the same, every cause; written every interval, zero or not
//	MaintenanceAge       (none)      Seconds       time since the last successful retention run of any worker, once known
//	TableRows            Table       Count         the retained table's estimated rows (ledger, claims, outbox)
//	TableBytes           Table       Bytes         its size on disk, indexes included
//
// HandlerLatency comes from the orderpipe_handler_duration_seconds
// histogram: for the n observations of an interval it writes min(n, 100)
// values at evenly spaced quantiles, interpolated within the histogram's
// buckets as Prometheus's histogram_quantile does, so CloudWatch's p50 and
// p99 of the metric are the histogram's to within a bucket. BreakerState's
// once-a-second samples let an alarm ask for the Minimum over a minute: a
// breaker that was never closed during it.
//
// The emitter runs in a goroutine of its own and only reads the metrics: a
// slow or blocked stdout delays its lines, never a message.
package emf

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderpipe/orderpipe/metrics"
)

// Defaults and bounds of Config.
const (
	NamespaceDefault   = "orderpipe"
	IntervalDefault    = time.Minute
	MinInterval        = time.Second
	MaxInterval        = time.Minute
	StopTimeoutDefault = 2 * time.Second
	// MaxValues is EMF's bound on the values of one metric in one line.
	MaxValues = 100
	// sampleEvery is how often breaker states are sampled.
	sampleEvery = time.Second
)

// Dimension names.
const (
	DimHandler = "Handler"
	DimBreaker = "Breaker"
	DimCause   = "Cause"
	DimTable   = "Table"
)

// Metric names.
const (
	MessagesReceived     = "MessagesReceived"
	MessagesProcessed    = "MessagesProcessed"
	MessagesRetried      = "MessagesRetried"
	MessagesDeadLettered = "MessagesDeadLettered"
	HandlerLatency       = "HandlerLatency"
	BreakerState         = "BreakerState"
	EmailDuplicateRisk   = "EmailDuplicateRisk"
	MaintenanceAge       = "MaintenanceAge"
	TableRows            = "TableRows"
	TableBytes           = "TableBytes"
)

// Series is one metric the emitter writes, with the dimension names it is
// written with (none for a total).
type Series struct {
	Name       string
	Dimensions []string
	Unit       string
}

// Catalogue is every metric and dimension set the emitter writes; the
// stack's alarms and dashboard may use these and nothing else (deploy's
// tests hold them to it, and internal/app's tests hold the emitter to it).
var Catalogue = []Series{
	{MessagesReceived, []string{DimHandler}, "Count"},
	{MessagesProcessed, []string{DimHandler}, "Count"},
	{MessagesRetried, []string{DimHandler}, "Count"},
	{MessagesDeadLettered, []string{DimHandler}, "Count"},
	{HandlerLatency, []string{DimHandler}, "Milliseconds"},
	{BreakerState, []string{DimBreaker}, "None"},
	{EmailDuplicateRisk, []string{DimCause}, "Count"},
	{EmailDuplicateRisk, nil, "Count"},
	{MaintenanceAge, nil, "Seconds"},
	{TableRows, []string{DimTable}, "Count"},
	{TableBytes, []string{DimTable}, "Bytes"},
}

// Config configures an Emitter.
type Config struct {
	// Namespace is the CloudWatch namespace of the metrics. Defaults to
	// NamespaceDefault; the stack sets "<NamePrefix>orderpipe".
	Namespace string
	// Interval is how often lines are written, aligned to the wall clock
	// (a 60s interval writes at every minute). From MinInterval to
	// MaxInterval; defaults to IntervalDefault. The stack's alarms are
	// built for one-minute periods.
	Interval time.Duration
	// Handlers are written every interval, with zeros before their first
	// message; handlers not listed are written once they have counted.
	Handlers []string
	// Output receives the lines, one Write per interval. Defaults to
	// os.Stdout, where the worker's JSON logs go.
	Output io.Writer
	// StopTimeout bounds the wait for the last lines at stop. Defaults to
	// StopTimeoutDefault.
	StopTimeout time.Duration
	// Logger reports a failed write (once). Defaults to slog.Default().
	Logger *slog.Logger
	// NowFunc is the clock. Defaults to time.Now.
	NowFunc func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Namespace == "" {
		c.Namespace = NamespaceDefault
	}
	if c.Interval == 0 {
		c.Interval = IntervalDefault
	}
	if c.Output == nil {
		c.Output = os.Stdout
	}
	if c.StopTimeout <= 0 {
		c.StopTimeout = StopTimeoutDefault
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.NowFunc == nil {
		c.NowFunc = time.Now
	}
	return c
}

// Validate refuses a namespace CloudWatch would refuse and an interval out
// of bounds, naming the field.
func (c Config) Validate() error {
	switch {
	case len(c.Namespace) > 255:
		return fmt.Errorf("emf: Namespace %q: at most 255 characters", c.Namespace)
	case strings.HasPrefix(c.Namespace, "AWS/"):
		return fmt.Errorf("emf: Namespace %q: AWS/ is reserved for AWS's own metrics", c.Namespace)
	case c.Interval != 0 && (c.Interval < MinInterval || c.Interval > MaxInterval):
		return fmt.Errorf("emf: Interval %s: want from %s to %s", c.Interval, MinInterval, MaxInterval)
	}
	for _, r := range c.Namespace {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("emf: Namespace %q: printable ASCII only", c.Namespace)
		}
	}
	return nil
}

// Emitter writes one worker's metrics as EMF lines. Run it in a goroutine
// of its own (Start).
type Emitter struct {
	cfg Config
	m   *metrics.Metrics

	since    time.Time            // start of the interval being counted
	counters map[string]float64   // counter values at the last write, by series key
	hists    map[string]histogram // handler durations at the last write, by handler
	states   map[string][]float64 // breaker states sampled since the last write
	failed   bool                 // a write failed (logged once)
}

// New returns an emitter of m's metrics.
func New(m *metrics.Metrics, cfg Config) (*Emitter, error) {
	if m == nil {
		return nil, errors.New("emf: no metrics to emit")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	return &Emitter{
		cfg: cfg, m: m, since: cfg.NowFunc(),
		counters: map[string]float64{}, hists: map[string]histogram{}, states: map[string][]float64{},
	}, nil
}

// Start runs the emitter in a goroutine until stop is called, whether or
// not ctx has ended: the worker's drain after its context ends is counted
// too. stop writes the last, partial interval and waits for it at most
// StopTimeout, so a blocked stdout cannot hold up the worker's exit.
func (e *Emitter) Start(ctx context.Context) (stop func()) {
	e.cfg.Logger.Info("writing metrics as CloudWatch EMF lines", "namespace", e.cfg.Namespace, "interval", e.cfg.Interval.String())
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	return func() {
		cancel()
		t := time.NewTimer(e.cfg.StopTimeout)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			e.cfg.Logger.Warn("emf: the last metrics lines were not written in time", "timeout", e.cfg.StopTimeout)
		}
	}
}

// Run samples the breakers every second and writes the lines at every
// multiple of the interval until ctx ends; then it writes the last, partial
// interval and returns.
func (e *Emitter) Run(ctx context.Context) {
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	next := e.boundaryAfter(e.since)
	e.sample()
	for {
		select {
		case <-ctx.Done():
			e.flush(e.cfg.NowFunc())
			return
		case <-tick.C:
			if now := e.cfg.NowFunc(); !now.Before(next) {
				e.flush(next)
				next = e.boundaryAfter(now)
			}
			e.sample()
		}
	}
}

// boundaryAfter is the first multiple of the interval after t.
func (e *Emitter) boundaryAfter(t time.Time) time.Time {
	return t.Truncate(e.cfg.Interval).Add(e.cfg.Interval)
}

// sample records each breaker's state.
func (e *Emitter) sample() {
	for _, m := range collect(e.m.BreakerState) {
		name := label(m, "breaker")
		e.states[name] = append(e.states[name], m.GetGauge().GetValue())
	}
}

// flush writes the lines of the interval from e.since to end, stamped
// with its start, and starts the next one at end.
func (e *Emitter) flush(end time.Time) {
	if len(e.states) == 0 {
		e.sample() // an interval shorter than a sample still shows the state
	}
	lines := e.lines(e.since)
	e.since = end
	clear(e.states)
	var b []byte
	for _, l := range lines {
		j, err := json.Marshal(l.document(e.cfg.Namespace))
		if err != nil {
			e.cfg.Logger.Error("emf: encode a metrics line", "err", err)
			continue
		}
		b = append(append(b, j...), '\n')
	}
	if _, err := e.cfg.Output.Write(b); err != nil && !e.failed {
		e.failed = true
		e.cfg.Logger.Warn("emf: writing metrics lines failed (reported once)", "err", err)
	}
}

// line is one EMF document: its dimension values and metric values at the
// root, and the directive naming them.
type line struct {
	ts     time.Time
	dims   map[string]string
	units  []metricDef
	values map[string]any
}

type metricDef struct {
	Name string `json:"Name"` //nolint:tagliatelle // EMF's own member names
	Unit string `json:"Unit"` //nolint:tagliatelle // EMF's own member names
}

func newLine(ts time.Time, dims map[string]string) *line {
	return &line{ts: ts, dims: dims, values: map[string]any{}}
}

// set sets a metric of l (a Series of the Catalogue).
func (l *line) set(name, unit string, v any) {
	if _, ok := l.values[name]; !ok {
		l.units = append(l.units, metricDef{name, unit})
	}
	l.values[name] = v
}

// document is l as EMF: the root members, and "_aws" with the directive.
func (l *line) document(namespace string) map[string]any {
	doc := map[string]any{}
	names := make([]string, 0, len(l.dims))
	for k, v := range l.dims {
		names = append(names, k)
		doc[k] = v
	}
	slices.Sort(names)
	maps.Copy(doc, l.values)
	doc["_aws"] = map[string]any{
		"Timestamp": l.ts.UnixMilli(),
		"CloudWatchMetrics": []map[string]any{{
			"Namespace": namespace, "Dimensions": [][]string{names}, "Metrics": l.units,
		}},
	}
	return doc
}

// lines builds the interval's lines: one per handler, breaker and cause,
// and the duplicate-risk total.
func (e *Emitter) lines(ts time.Time) []*line {
	perHandler := map[string]*line{}
	counts := map[string]map[string]float64{} // handler → metric → count
	handler := func(h string) {
		if _, ok := perHandler[h]; !ok {
			perHandler[h], counts[h] = newLine(ts, map[string]string{DimHandler: h}), map[string]float64{}
		}
	}
	for _, h := range e.cfg.Handlers {
		handler(h)
	}
	for _, c := range []struct {
		name string
		vec  *prometheus.CounterVec
	}{
		{MessagesReceived, e.m.MessagesReceived}, {MessagesProcessed, e.m.MessagesProcessed},
		{MessagesRetried, e.m.MessagesRetried}, {MessagesDeadLettered, e.m.MessagesDeadLettered},
	} {
		for h, v := range e.deltas(c.name, c.vec, "handler") {
			handler(h)
			counts[h][c.name] += v
		}
	}
	latencies := e.latencies()
	for h := range latencies {
		handler(h)
	}
	var out []*line
	for _, h := range sortedKeys(perHandler) {
		l := perHandler[h]
		for _, name := range []string{MessagesReceived, MessagesProcessed, MessagesRetried, MessagesDeadLettered} {
			l.set(name, "Count", counts[h][name])
		}
		if vs := latencies[h]; len(vs) > 0 {
			l.set(HandlerLatency, "Milliseconds", vs)
		}
		out = append(out, l)
	}
	for _, b := range sortedKeys(e.states) {
		l := newLine(ts, map[string]string{DimBreaker: b})
		l.set(BreakerState, "None", lastValues(e.states[b], MaxValues))
		out = append(out, l)
	}
	total := 0.0
	risks := e.deltas(EmailDuplicateRisk, e.m.EmailDuplicateRisk, "cause")
	for _, cause := range sortedKeys(risks) {
		l := newLine(ts, map[string]string{DimCause: cause})
		l.set(EmailDuplicateRisk, "Count", risks[cause])
		out = append(out, l)
		total += risks[cause]
	}
	l := newLine(ts, nil)
	l.set(EmailDuplicateRisk, "Count", total)
	return append(out, e.retentionLines(ts, l)...)
}

// retentionLines adds MaintenanceAge to the line without dimensions l,
// once known, and returns it with a line per retained table. The
// retention's figures are the fleet's (the maintenance table, read by
// every worker): gauges, written as they stand at the write.
func (e *Emitter) retentionLines(ts time.Time, l *line) []*line {
	for _, g := range collect(e.m.MaintenanceLastSuccess) {
		if last := g.GetGauge().GetValue(); last > 0 {
			l.set(MaintenanceAge, "Seconds", math.Round(max(float64(e.cfg.NowFunc().UnixMilli())/1000-last, 0)))
		}
	}
	out := []*line{l}
	rows, bytes := map[string]float64{}, map[string]float64{}
	for _, m := range collect(e.m.TableRows) {
		rows[label(m, "table")] = m.GetGauge().GetValue()
	}
	for _, m := range collect(e.m.TableBytes) {
		bytes[label(m, "table")] = m.GetGauge().GetValue()
	}
	for _, table := range sortedKeys(rows) {
		l := newLine(ts, map[string]string{DimTable: table})
		l.set(TableRows, "Count", rows[table])
		l.set(TableBytes, "Bytes", bytes[table])
		out = append(out, l)
	}
	return out
}

// deltas returns how much each of c's counters grew since the last write,
// summed by the label by (other labels, such as a dead letter's reason,
// are added up).
func (e *Emitter) deltas(name string, c prometheus.Collector, by string) map[string]float64 {
	out := map[string]float64{}
	for _, m := range collect(c) {
		key := name + "\x00" + seriesKey(m)
		v := m.GetCounter().GetValue()
		d := v - e.counters[key]
		if d < 0 { // a counter that started again: all of it is new
			d = v
		}
		e.counters[key] = v
		out[label(m, by)] += d
	}
	return out
}

// histogram is a handler's durations, every outcome added up: cumulative
// counts per upper bound, and the total.
type histogram struct {
	bounds []float64
	cum    []uint64
	count  uint64
}

// latencies returns, per handler, the interval's durations as at most
// MaxValues values in milliseconds.
func (e *Emitter) latencies() map[string][]float64 {
	now := map[string]histogram{}
	for _, m := range collect(e.m.HandlerDuration) {
		h := label(m, "handler")
		now[h] = now[h].add(m.GetHistogram())
	}
	out := map[string][]float64{}
	for h, cur := range now {
		out[h] = cur.minus(e.hists[h]).quantiles(MaxValues)
		e.hists[h] = cur
	}
	return out
}

func (h histogram) add(p *dto.Histogram) histogram {
	if h.bounds == nil {
		for _, b := range p.GetBucket() {
			h.bounds = append(h.bounds, b.GetUpperBound())
		}
		h.cum = make([]uint64, len(h.bounds))
	}
	for i, b := range p.GetBucket() {
		if i < len(h.cum) {
			h.cum[i] += b.GetCumulativeCount()
		}
	}
	h.count += p.GetSampleCount()
	return h
}

// minus is h's observations since prev (all of them if prev is empty or
// larger: a histogram that started again).
func (h histogram) minus(prev histogram) histogram {
	if prev.count > h.count || len(prev.cum) != len(h.cum) {
		return h
	}
	d := histogram{bounds: h.bounds, cum: make([]uint64, len(h.cum)), count: h.count - prev.count}
	for i := range h.cum {
		d.cum[i] = h.cum[i] - prev.cum[i]
	}
	return d
}

// quantiles returns min(count, n) values at the quantiles (i+0.5)/k, in
// milliseconds, interpolated linearly within buckets; observations above
// the last bound count as the last bound (histogram_quantile's rules).
func (h histogram) quantiles(n int) []float64 {
	k := min(int(h.count), n) //nolint:gosec // G115: k is at most n
	out := make([]float64, 0, k)
	for i := range k {
		out = append(out, math.Round(h.quantile((float64(i)+0.5)/float64(k))*1e4)/10)
	}
	return out
}

func (h histogram) quantile(q float64) float64 {
	rank := q * float64(h.count)
	lower, below := 0.0, uint64(0)
	for i, upper := range h.bounds {
		if float64(h.cum[i]) >= rank {
			in := h.cum[i] - below
			if in == 0 {
				return upper
			}
			return lower + (upper-lower)*(rank-float64(below))/float64(in)
		}
		lower, below = upper, h.cum[i]
	}
	return lower // above the last bound
}

// collect reads a collector's current metrics.
func collect(c prometheus.Collector) []*dto.Metric {
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	var out []*dto.Metric
	for pm := range ch {
		var m dto.Metric
		if pm.Write(&m) == nil {
			out = append(out, &m)
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func seriesKey(m *dto.Metric) string {
	var b strings.Builder
	for _, l := range m.GetLabel() {
		b.WriteString(l.GetName() + "=" + l.GetValue() + "\x00")
	}
	return b.String()
}

// lastValues is the last n of vs.
func lastValues(vs []float64, n int) []float64 {
	return slices.Clone(vs[max(len(vs)-n, 0):])
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Point is one metric of one EMF line, as CloudWatch extracts it: one
// point per dimension set.
type Point struct {
	Namespace  string
	Name       string
	Unit       string
	Dimensions map[string]string // name → value; empty for a total
	Values     []float64
	Timestamp  time.Time
}

// units are the units CloudWatch accepts.
var units = []string{
	"Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes", "Gigabytes", "Terabytes",
	"Bits", "Kilobits", "Megabits", "Gigabits", "Terabits", "Percent", "Count", "Bytes/Second",
	"Kilobytes/Second", "Megabytes/Second", "Gigabytes/Second", "Terabytes/Second", "Bits/Second",
	"Kilobits/Second", "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None",
}

// Parse reads one EMF line by the specification (CloudWatch's "Embedded
// metric format specification"): a JSON object with _aws.Timestamp and
// _aws.CloudWatchMetrics, each directive a namespace, dimension sets of
// root string members and at most 100 metrics, each a root number or array
// of at most 100 numbers with a valid unit. It returns the points
// CloudWatch would extract, or what breaks the specification.
func Parse(b []byte) ([]Point, error) {
	var root map[string]json.RawMessage
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("not a JSON object: %w", err)
	}
	var meta struct {
		Timestamp         *int64 `json:"Timestamp"` //nolint:tagliatelle // EMF's own member names
		CloudWatchMetrics []struct {
			Namespace  string      `json:"Namespace"`  //nolint:tagliatelle // EMF's own member names
			Dimensions [][]string  `json:"Dimensions"` //nolint:tagliatelle // EMF's own member names
			Metrics    []metricDef `json:"Metrics"`    //nolint:tagliatelle // EMF's own member names
		} `json:"CloudWatchMetrics"` //nolint:tagliatelle // EMF's own member names
	}
	if err := json.Unmarshal(root["_aws"], &meta); err != nil || meta.Timestamp == nil || meta.CloudWatchMetrics == nil {
		return nil, errors.New("no _aws object with Timestamp and CloudWatchMetrics")
	}
	var out []Point
	for _, d := range meta.CloudWatchMetrics {
		if d.Namespace == "" || len(d.Namespace) > 255 || len(d.Dimensions) == 0 || len(d.Metrics) > MaxValues {
			return nil, fmt.Errorf("directive %q: want a namespace, at least one dimension set and at most %d metrics", d.Namespace, MaxValues)
		}
		for _, set := range d.Dimensions {
			dims, err := dimensionValues(root, set)
			if err != nil {
				return nil, err
			}
			for _, md := range d.Metrics {
				vs, err := metricValues(root, md)
				if err != nil {
					return nil, err
				}
				out = append(out, Point{Namespace: d.Namespace, Name: md.Name, Unit: md.Unit, Dimensions: dims, Values: vs, Timestamp: time.UnixMilli(*meta.Timestamp)})
			}
		}
	}
	return out, nil
}

func dimensionValues(root map[string]json.RawMessage, set []string) (map[string]string, error) {
	if len(set) > 30 {
		return nil, fmt.Errorf("dimension set %v: more than 30 dimensions", set)
	}
	dims := map[string]string{}
	for _, k := range set {
		var v string
		if err := json.Unmarshal(root[k], &v); err != nil || v == "" {
			return nil, fmt.Errorf("dimension %q: want a string member of the root", k)
		}
		dims[k] = v
	}
	return dims, nil
}

func metricValues(root map[string]json.RawMessage, md metricDef) ([]float64, error) {
	if md.Name == "" || md.Unit != "" && !slices.Contains(units, md.Unit) {
		return nil, fmt.Errorf("metric %q: unit %q is not CloudWatch's", md.Name, md.Unit)
	}
	var one float64
	if json.Unmarshal(root[md.Name], &one) == nil {
		return []float64{one}, nil
	}
	var many []float64
	if err := json.Unmarshal(root[md.Name], &many); err != nil || len(many) == 0 || len(many) > MaxValues {
		return nil, fmt.Errorf("metric %q: want a number or 1 to %d numbers at the root", md.Name, MaxValues)
	}
	return many, nil
}
