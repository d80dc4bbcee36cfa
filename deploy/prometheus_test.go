package deploy

// Tests of what Prometheus users get: deploy/prometheus/alerts.yml (its
// unit tests run by promtool) and deploy/grafana/orderpipe.json, both held
// to the worker's real metric and label names.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/orderpipe/orderpipe/metrics"
	"github.com/orderpipe/orderpipe/topology"
)

const (
	alertRulesFile  = "prometheus/alerts.yml"
	alertTestsFile  = "prometheus/alerts_test.yml"
	grafanaFile     = "grafana/orderpipe.json"
	promtoolTimeout = time.Minute
)

// promtool returns the path of Debian's promtool, which `make up`
// installs (scripts/stack.sh). Missing, the test fails: CI must run it.
func promtool(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs promtool: skipped by -short")
	}
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is not installed: run `make up`, which installs Debian's prometheus package for it")
	}
	return p
}

// runPromtool runs promtool with args, logs its output, and fails the
// test if it fails.
func runPromtool(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), promtoolTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, promtool(t), args...).CombinedOutput()
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
	if err != nil {
		t.Errorf("promtool %s: %v", strings.Join(args, " "), err)
	}
}

// promFamily is one of the worker's Prometheus metrics and its labels.
type promFamily struct {
	labels    []string
	histogram bool
}

var descName = regexp.MustCompile(`fqName: "([^"]+)".*variableLabels: \{([^}]*)\}`)

// workerFamilies reads every metric of metrics.Metrics from its
// descriptors (a vector without children exports nothing yet).
func workerFamilies(t *testing.T) map[string]promFamily {
	t.Helper()
	m := metrics.New()
	out := map[string]promFamily{}
	v := reflect.ValueOf(m).Elem()
	for i := range v.NumField() {
		c, ok := reflect.TypeAssert[prometheus.Collector](v.Field(i))
		if !ok || v.Type().Field(i).Name == "Registry" {
			continue
		}
		_, histogram := c.(*prometheus.HistogramVec)
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			sub := descName.FindStringSubmatch(d.String())
			if sub == nil {
				t.Fatalf("cannot read descriptor %s", d)
			}
			var labels []string
			if sub[2] != "" {
				labels = strings.Split(sub[2], ",")
			}
			out[sub[1]] = promFamily{labels: labels, histogram: histogram}
		}
	}
	if len(out) < 10 {
		t.Fatalf("read %d metrics from metrics.Metrics", len(out))
	}
	return out
}

var (
	promMetric  = regexp.MustCompile(`\b(orderpipe_[a-z0-9_]+)`)
	promMatcher = regexp.MustCompile(`\b([a-z_]+)\s*(?:=~|!~|!=|=)\s*"`)
	promBy      = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

// checkPromQL reports a metric the worker does not export in expr, and a
// label neither those metrics nor Prometheus (job, instance, le) have.
func checkPromQL(t *testing.T, where, expr string, families map[string]promFamily) {
	t.Helper()
	known := []string{"job", "instance", "le"}
	names := promMetric.FindAllString(expr, -1)
	if len(names) == 0 {
		t.Errorf("%s: %q reads no orderpipe metric", where, expr)
	}
	for _, n := range names {
		f, ok := families[n]
		if base, cut := strings.CutSuffix(n, "_bucket"); cut {
			f, ok = families[base]
			ok = ok && f.histogram
		}
		if !ok {
			t.Errorf("%s: the worker exports no metric %s (%q)", where, n, expr)
		}
		known = append(known, f.labels...)
	}
	var labels []string
	for _, m := range promMatcher.FindAllStringSubmatch(expr, -1) {
		labels = append(labels, m[1])
	}
	for _, m := range promBy.FindAllStringSubmatch(expr, -1) {
		for l := range strings.SplitSeq(m[1], ",") {
			labels = append(labels, strings.TrimSpace(l))
		}
	}
	for _, l := range labels {
		if !slices.Contains(known, l) {
			t.Errorf("%s: label %q is not one of %v (%q)", where, l, known, expr)
		}
	}
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertRulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", alertRulesFile, err)
	}
	var out []alertRule
	for _, g := range doc.Groups {
		out = append(out, g.Rules...)
	}
	return out
}

// TestPrometheusAlertRules: the rules load (promtool check rules), each
// fires for its failure and stays quiet for an ordinary failover
// (promtool test rules alerts_test.yml), every rule has a test, and they
// read only metrics and labels the worker exports.
func TestPrometheusAlertRules(t *testing.T) {
	runPromtool(t, "check", "rules", alertRulesFile)
	runPromtool(t, "test", "rules", alertTestsFile)
	families := workerFamilies(t)
	tests, err := os.ReadFile(alertTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	rules := alertRules(t)
	for _, r := range rules {
		checkPromQL(t, "alert "+r.Alert, r.Expr, families)
		if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
			t.Errorf("alert %s: want a severity, a summary and a description", r.Alert)
		}
		if !regexp.MustCompile(`alertname: ` + r.Alert + `\n\s+exp_alerts:\n\s+- exp_labels`).Match(tests) {
			t.Errorf("alert %s: %s has no test in which it fires", r.Alert, alertTestsFile)
		}
	}
	// The signals of the CloudWatch alarms the worker's metrics can show.
	for _, want := range []string{"OrderpipeDatabaseBreakerOpen", "OrderpipeEmailDuplicateRisk", "OrderpipeMessagesDeadLettered", "OrderpipeHandlerLatencyHigh", "OrderpipeNotProgressing", "OrderpipeMaintenanceStopped"} {
		if !slices.ContainsFunc(rules, func(r alertRule) bool { return r.Alert == want }) {
			t.Errorf("no alert %s", want)
		}
	}
}

// grafanaDashboard is the part of the dashboard JSON the tests read.
type grafanaDashboard struct {
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query string `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaPanel struct {
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Repeat      string `json:"repeat"`
	Datasource  struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Datasource struct {
			Type string `json:"type"`
		} `json:"datasource"`
		Expr       string            `json:"expr"`
		Namespace  string            `json:"namespace"`
		MetricName string            `json:"metricName"`
		Dimensions map[string]string `json:"dimensions"`
		Statistic  string            `json:"statistic"`
	} `json:"targets"`
}

// grafanaVars fills a panel's Grafana variables for one handler.
func grafanaVars(s, handler string) string {
	return strings.NewReplacer("$__rate_interval", "5m", "${prefix}", "prod-", "$handler", handler).Replace(s)
}

// TestGrafanaDashboard: every Prometheus query parses (promtool check
// rules, on a rule per query) and reads the worker's real metrics and
// labels; every CloudWatch query reads a metric the sample stack
// publishes (a queue of the topology, the stack's cluster and service);
// and the dashboard shows, per handler, backlog, oldest message, DLQ depth
// and latency p50/p99, and the breakers, duplicate risk and tasks, with
// each alert of alerts.yml named where its figure is.
func TestGrafanaDashboard(t *testing.T) {
	b, err := os.ReadFile(grafanaFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", grafanaFile, err)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type + " " + v.Query
	}
	if vars["prometheus"] != "datasource prometheus" || vars["cloudwatch"] != "datasource cloudwatch" || vars["handler"] != "custom billing,notification,inventory" {
		t.Errorf("template variables %v: want the two data sources and the three handlers", vars)
	}
	_, pipe := sample(t)
	pub := publishedBy(t, pipe)
	families := workerFamilies(t)
	top := topology.Default().WithPrefix("prod-")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: grafana\n    rules:\n")
	shown := map[string]bool{}
	var descriptions strings.Builder
	repeated := false
	for _, p := range d.Panels {
		if p.Type == "row" {
			repeated = p.Repeat == "handler"
			continue
		}
		descriptions.WriteString(p.Description + "\n")
		for i, tg := range p.Targets {
			where := fmt.Sprintf("panel %q query %d", p.Title, i)
			for _, q := range top.Queues {
				if !repeated && q.Handler != "billing" {
					continue // not per handler: once is enough
				}
				switch tg.Datasource.Type {
				case "prometheus":
					expr := grafanaVars(tg.Expr, q.Handler)
					checkPromQL(t, where, expr, families)
					fmt.Fprintf(&rules, "      - record: grafana:query_%d\n        expr: %q\n", strings.Count(rules.String(), "record:"), expr)
					shown[strings.TrimPrefix(grafanaVars(p.Title, q.Handler), q.Handler+": ")+" "+grafanaVars(tg.Expr, "")] = true
				case "cloudwatch":
					m := Metric{Namespace: tg.Namespace, Name: tg.MetricName, Dimensions: map[string]string{}, Stat: tg.Statistic}
					for k, v := range tg.Dimensions {
						m.Dimensions[k] = grafanaVars(v, q.Handler)
					}
					if err := pub.check(m); err != nil {
						t.Errorf("%s: %v", where, err)
					}
					shown[m.String()] = true
				default:
					t.Errorf("%s: data source %q, want ${prometheus} or ${cloudwatch}", where, tg.Datasource.Type)
				}
			}
		}
	}
	// The per-handler figures, for each handler.
	for _, q := range top.Queues {
		for _, m := range []Metric{
			{Namespace: "AWS/SQS", Name: "ApproximateNumberOfMessagesVisible", Dimensions: map[string]string{"QueueName": q.Name}},
			{Namespace: "AWS/SQS", Name: "ApproximateAgeOfOldestMessage", Dimensions: map[string]string{"QueueName": q.Name}},
			{Namespace: "AWS/SQS", Name: "ApproximateNumberOfMessagesVisible", Dimensions: map[string]string{"QueueName": top.DLQName(q)}},
		} {
			if !shown[m.String()] {
				t.Errorf("the Grafana dashboard does not show %s", m)
			}
		}
	}
	for _, want := range []string{
		`handler latency histogram_quantile(0.5, sum by (le) (rate(orderpipe_handler_duration_seconds_bucket{handler=""}[5m])))`,
		`handler latency histogram_quantile(0.99, sum by (le) (rate(orderpipe_handler_duration_seconds_bucket{handler=""}[5m])))`,
		`Breakers (0 closed, 1 half-open, 2 open) max by (breaker) (orderpipe_breaker_state)`,
		`Email duplicate risk sum by (cause) (increase(orderpipe_email_duplicate_risk_total[5m]))`,
		`Retention: time since the last successful run time() - max(orderpipe_maintenance_last_success_timestamp_seconds)`,
		`Retained tables: rows (estimated) max by (table) (orderpipe_table_rows)`,
		`Retained tables: size on disk max by (table) (orderpipe_table_bytes)`,
		Metric{Namespace: "ECS/ContainerInsights", Name: "RunningTaskCount", Dimensions: map[string]string{"ClusterName": pub.cluster, "ServiceName": pub.service}}.String(),
	} {
		if !shown[want] {
			t.Errorf("the Grafana dashboard does not show %s", want)
		}
	}
	for _, r := range alertRules(t) {
		if !strings.Contains(descriptions.String(), r.Alert) {
			t.Errorf("no panel's description names alert %s beside its figure", r.Alert)
		}
	}
	file := filepath.Join(t.TempDir(), "grafana-queries.yml")
	if err := os.WriteFile(file, []byte(rules.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	runPromtool(t, "check", "rules", file)
}
