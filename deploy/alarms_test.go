package deploy

// Structural tests of the alarms and the dashboard: which signal each alarm
// watches, that every metric it reads is one AWS publishes for a resource
// of the stack or one the worker writes (metrics/emf's Catalogue; the
// emitter's own test in internal/app proves the worker writes each), and
// that the dashboard shows every signal per handler.

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/metrics/emf"
	"github.com/orderpipe/orderpipe/topology"
)

// alarm is an evaluated AWS::CloudWatch::Alarm of the pipeline stack.
type alarm struct {
	logical string
	props   *Map
	raw     Resource // as written: Ref and GetAtt unevaluated
	metrics []Metric
}

func alarms(t *testing.T, pipe *Stack) []alarm {
	t.Helper()
	var out []alarm
	for _, r := range pipe.T.ResourcesOfType("AWS::CloudWatch::Alarm") {
		ms, err := pipe.AlarmMetrics(r.Logical)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, alarm{logical: r.Logical, props: mustProps(t, pipe, r.Logical), raw: r, metrics: ms})
	}
	return out
}

// stackMetrics is what the stack's resources publish, to check a watched
// metric against: its queues' names, its cluster and service, and the
// worker's EMF namespace as its task definition sets it.
type stackMetrics struct {
	queues           []string
	cluster, service string
	emfNamespace     string
}

func publishedBy(t *testing.T, pipe *Stack) stackMetrics {
	t.Helper()
	s := stackMetrics{cluster: ref(t, pipe, "Cluster"), service: prop(t, pipe, "Service", "ServiceName")}
	for _, q := range pipe.T.ResourcesOfType("AWS::SQS::Queue") {
		s.queues = append(s.queues, mustProps(t, pipe, q.Logical).String("QueueName"))
	}
	worker := container(t, pipe, WorkerTaskDefinition, WorkerContainer)
	if worker.Env["METRICS_EMF"] != "true" || worker.Env["METRICS_EMF_NAMESPACE"] == "" {
		t.Fatalf("the worker's task sets METRICS_EMF=%q METRICS_EMF_NAMESPACE=%q: the alarms' own metrics would never be written",
			worker.Env["METRICS_EMF"], worker.Env["METRICS_EMF_NAMESPACE"])
	}
	s.emfNamespace = worker.Env["METRICS_EMF_NAMESPACE"]
	return s
}

// check reports a watched metric that nothing in the stack publishes.
func (s stackMetrics) check(w Metric) error {
	dims := sortedNames(w.Dimensions)
	switch w.Namespace {
	case "AWS/SQS":
		if !slices.Equal(dims, []string{"QueueName"}) || !slices.Contains(s.queues, w.Dimensions["QueueName"]) {
			return fmt.Errorf("%s: not a queue of the stack", w)
		}
	case "ECS/ContainerInsights":
		if w.Dimensions["ClusterName"] != s.cluster || w.Dimensions["ServiceName"] != s.service || len(dims) != 2 {
			return fmt.Errorf("%s: not the stack's cluster %s and service %s", w, s.cluster, s.service)
		}
	case s.emfNamespace:
		if !slices.ContainsFunc(emf.Catalogue, func(c emf.Series) bool {
			return c.Name == w.Name && slices.Equal(sorted(c.Dimensions), dims)
		}) {
			return fmt.Errorf("%s: the worker writes no such metric (metrics/emf's Catalogue)", w)
		}
	default:
		return fmt.Errorf("%s: a namespace nothing in the stack publishes to (the worker's is %s)", w, s.emfNamespace)
	}
	return nil
}

// rawJSON is a resource property as written, for Ref comparisons.
func rawJSON(r Resource, key string) string { return mustJSON(r.Properties.Get(key)) }

// TestAlarmsWatchEverySignal: one alarm per signal the operator needs,
// each on a metric the stack really publishes, with its threshold from
// its parameter, notifying the alarm topic when it fires and clears.
func TestAlarmsWatchEverySignal(t *testing.T) {
	_, pipe := sample(t)
	pub := publishedBy(t, pipe)
	top := topology.Default().WithPrefix("prod-")
	all := alarms(t, pipe)
	topic := ref(t, pipe, "AlarmTopic")
	for _, a := range all {
		for _, w := range a.metrics {
			if err := pub.check(w); err != nil {
				t.Errorf("alarm %s: %v", a.logical, err)
			}
		}
		for _, k := range []string{"AlarmActions", "OKActions"} {
			if got := mustJSON(a.props.Get(k)); got != mustJSON([]any{topic}) {
				t.Errorf("alarm %s: %s %s, want [the alarm topic %s]", a.logical, k, got, topic)
			}
		}
		if !strings.HasPrefix(a.props.String("AlarmName"), "prod-orderpipe-") || a.props.String("AlarmDescription") == "" {
			t.Errorf("alarm %s: name %q, want prod-orderpipe-... (NamePrefix) and a description saying what to do", a.logical, a.props.String("AlarmName"))
		}
	}

	// find returns the one alarm on metric name whose dimensions include
	// dims, failing unless there is exactly one.
	found := map[string]bool{}
	find := func(t *testing.T, namespace, name string, dims map[string]string) alarm {
		t.Helper()
		var match []alarm
		for _, a := range all {
			for _, w := range a.metrics {
				if w.Namespace == namespace && w.Name == name && cmp.Equal(w.Dimensions, dims) {
					match = append(match, a)
					break
				}
			}
		}
		if len(match) != 1 {
			t.Fatalf("%d alarms on %s/%s %v, want one", len(match), namespace, name, dims)
		}
		found[match[0].logical] = true
		return match[0]
	}
	// expect checks an alarm's statistic, comparison and threshold, period
	// and evaluation periods (threshold and evaluations as written: a
	// number, or the Ref of their parameter).
	expect := func(t *testing.T, a alarm, stat, op, threshold, period, evals string) {
		t.Helper()
		if len(a.metrics) == 1 && a.metrics[0].Stat != stat {
			t.Errorf("%s: statistic %s, want %s", a.logical, a.metrics[0].Stat, stat)
		}
		got := fmt.Sprintf("%s %s, period %q, evaluation periods %s", a.props.String("ComparisonOperator"),
			rawJSON(a.raw, "Threshold"), scalarString(a.props.Get("Period")), rawJSON(a.raw, "EvaluationPeriods"))
		if want := fmt.Sprintf("%s %s, period %q, evaluation periods %s", op, threshold, period, evals); got != want {
			t.Errorf("%s: %s, want %s", a.logical, got, want)
		}
	}
	for _, q := range top.Queues {
		t.Run("DLQ depth of "+q.Handler, func(t *testing.T) {
			a := find(t, "AWS/SQS", "ApproximateNumberOfMessagesVisible", map[string]string{"QueueName": top.DLQName(q)})
			expect(t, a, "Maximum", "GreaterThanThreshold", "0", "60", "1")
		})
		t.Run("age of the oldest message of "+q.Handler, func(t *testing.T) {
			a := find(t, "AWS/SQS", "ApproximateAgeOfOldestMessage", map[string]string{"QueueName": q.Name})
			expect(t, a, "Maximum", "GreaterThanThreshold", `{"Ref":"OldestMessageAgeAlarmSeconds"}`, "60", "1")
		})
	}
	t.Run("backlog per task above target for too long", func(t *testing.T) {
		a := find(t, "ECS/ContainerInsights", "RunningTaskCount", map[string]string{"ClusterName": pub.cluster, "ServiceName": pub.service})
		expect(t, a, "", "GreaterThanThreshold", `{"Ref":"TargetBacklogPerTask"}`, "", `{"Ref":"BacklogAlarmMinutes"}`)
		// The very figure autoscaling tracks: the same queries and expression.
		policy := mustProps(t, pipe, "BacklogPerTaskPolicy").Map("TargetTrackingScalingPolicyConfiguration").Map("CustomizedMetricSpecification").List("Metrics")
		strip := func(qs []any) string {
			var out []any
			for _, q := range qs {
				m := mapOf(t, "query", q)
				c := NewMap()
				for _, k := range m.Keys() {
					c.Set(k, m.Get(k))
				}
				if s := m.Map("MetricStat"); s != nil {
					cs := NewMap()
					for _, k := range s.Keys() {
						if k != "Period" { // an alarm's query needs one; the policy's has none
							cs.Set(k, s.Get(k))
						}
					}
					c.Set("MetricStat", cs)
				}
				out = append(out, c)
			}
			return mustJSON(out)
		}
		if got, want := strip(a.props.List("Metrics")), strip(policy); got != want {
			t.Errorf("the alarm's backlog per task differs from the scaling policy's:\n alarm  %s\n policy %s", got, want)
		}
	})
	t.Run("database breaker open longer than a minute", func(t *testing.T) {
		a := find(t, pub.emfNamespace, emf.BreakerState, map[string]string{emf.DimBreaker: "database"})
		expect(t, a, "Minimum", "GreaterThanOrEqualToThreshold", "1", "60", "2")
		if a.props.Get("DatapointsToAlarm") != int64(1) {
			t.Errorf("%s: DatapointsToAlarm %v, want 1 (of 2: EMF metrics arrive with the logs)", a.logical, a.props.Get("DatapointsToAlarm"))
		}
	})
	t.Run("email duplicate risk", func(t *testing.T) {
		a := find(t, pub.emfNamespace, emf.EmailDuplicateRisk, map[string]string{})
		expect(t, a, "Sum", "GreaterThanThreshold", "0", "60", "5")
		if a.props.Get("DatapointsToAlarm") != int64(1) || a.props.String("TreatMissingData") != "notBreaching" {
			t.Errorf("%s: want any one minute of five, missing data not breaching", a.logical)
		}
	})
	t.Run("retention maintenance stopped", func(t *testing.T) {
		a := find(t, pub.emfNamespace, emf.MaintenanceAge, map[string]string{})
		expect(t, a, "Minimum", "GreaterThanThreshold", "7200", "300", "3")
		if a.props.String("TreatMissingData") != "breaching" {
			t.Errorf("%s: missing data %q, want breaching (no worker has seen a run)", a.logical, a.props.String("TreatMissingData"))
		}
	})
	t.Run("task count at maximum", func(t *testing.T) {
		a := find(t, "ECS/ContainerInsights", "DesiredTaskCount", map[string]string{"ClusterName": pub.cluster, "ServiceName": pub.service})
		expect(t, a, "Maximum", "GreaterThanOrEqualToThreshold", `{"Ref":"MaxTasks"}`, "60", "5")
	})
	for _, a := range all {
		if !found[a.logical] {
			t.Errorf("alarm %s watches no signal this test knows: add its case", a.logical)
		}
	}
	if p := mustProps(t, pipe, "AlarmTopic"); p.Has("Subscription") {
		t.Errorf("with AlarmEmail empty the topic has a subscription %s", mustJSON(p.Get("Subscription")))
	}
}

// TestAlarmEmailSubscribesToTheTopic: AlarmEmail, set in the parent,
// subscribes that address to the alarm topic.
func TestAlarmEmailSubscribesToTheTopic(t *testing.T) {
	params := SampleParameters()
	params["AlarmEmail"] = "ops@shop.example.com"
	d, err := Render(params)
	if err != nil {
		t.Fatal(err)
	}
	pipe := mustStack(t, d.Pipeline)
	if got, want := mustJSON(mustProps(t, pipe, "AlarmTopic").Get("Subscription")), `[{"Protocol":"email","Endpoint":"ops@shop.example.com"}]`; got != want {
		t.Errorf("alarm topic subscriptions %s, want %s", got, want)
	}
}

// TestDashboardShowsEverySignalPerHandler: a row per handler with its
// backlog, oldest message, DLQ depth and latency p50/p99; the breakers,
// duplicate risk, tasks and backlog per task above; the retention (time
// since its last run, the retained tables' rows and sizes) below; the
// alarms' states at the top. Every metric is one the stack publishes, and no two widgets
// overlap on the 24-column grid.
func TestDashboardShowsEverySignalPerHandler(t *testing.T) {
	_, pipe := sample(t)
	pub := publishedBy(t, pipe)
	ws, err := pipe.DashboardWidgets("Dashboard")
	if err != nil {
		t.Fatal(err)
	}
	shown := map[string][]string{} // metric → the stats shown
	var alarmARNs []string
	for i, w := range ws {
		if w.X < 0 || w.Width < 1 || w.X+w.Width > 24 || w.Height < 1 {
			t.Errorf("widget %d (%v) is off the 24-column grid", i, w.Title())
		}
		for _, o := range ws[:i] {
			if w.X < o.X+o.Width && o.X < w.X+w.Width && w.Y < o.Y+o.Height && o.Y < w.Y+w.Height {
				t.Errorf("widgets %q and %q overlap", w.Title(), o.Title())
			}
		}
		switch w.Type {
		case "alarm":
			l, _ := w.Properties["alarms"].([]any)
			for _, a := range l {
				s, _ := a.(string)
				alarmARNs = append(alarmARNs, s)
			}
		case "metric":
			if w.Properties["region"] != SampleRegion {
				t.Errorf("widget %q shows region %v, want the stack's", w.Title(), w.Properties["region"])
			}
			ms, err := w.Metrics()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ms {
				if err := pub.check(m); err != nil {
					t.Errorf("widget %q: %v", w.Title(), err)
				}
				shown[m.String()] = append(shown[m.String()], m.Stat)
			}
		default:
			t.Errorf("widget %d has type %q", i, w.Type)
		}
	}
	expect := func(t *testing.T, w Metric, stats ...string) {
		t.Helper()
		got, ok := shown[w.String()]
		if !ok {
			t.Errorf("the dashboard does not show %s", w)
		}
		for _, s := range stats {
			if !slices.Contains(got, s) {
				t.Errorf("the dashboard shows %s as %v, not %s", w, got, s)
			}
		}
	}
	sqs := func(name, queue string) Metric {
		return Metric{Namespace: "AWS/SQS", Name: name, Dimensions: map[string]string{"QueueName": queue}}
	}
	emfMetric := func(name string, dims map[string]string) Metric {
		return Metric{Namespace: pub.emfNamespace, Name: name, Dimensions: dims}
	}
	top := topology.Default().WithPrefix("prod-")
	for _, q := range top.Queues {
		t.Run(q.Handler, func(t *testing.T) {
			expect(t, sqs("ApproximateNumberOfMessagesVisible", q.Name))
			expect(t, sqs("ApproximateAgeOfOldestMessage", q.Name))
			expect(t, sqs("ApproximateNumberOfMessagesVisible", top.DLQName(q)))
			expect(t, emfMetric(emf.HandlerLatency, map[string]string{emf.DimHandler: q.Handler}), "p50", "p99")
			expect(t, emfMetric(emf.MessagesProcessed, map[string]string{emf.DimHandler: q.Handler}), "Sum")
			expect(t, emfMetric(emf.MessagesDeadLettered, map[string]string{emf.DimHandler: q.Handler}), "Sum")
		})
	}
	t.Run("breakers", func(t *testing.T) {
		for _, b := range []string{"database", "smtp", "redis", "sns"} {
			expect(t, emfMetric(emf.BreakerState, map[string]string{emf.DimBreaker: b}))
		}
	})
	t.Run("email duplicate risk", func(t *testing.T) {
		expect(t, emfMetric(emf.EmailDuplicateRisk, map[string]string{}), "Sum")
	})
	t.Run("retention", func(t *testing.T) {
		expect(t, emfMetric(emf.MaintenanceAge, map[string]string{}), "Minimum")
		for _, table := range []string{"processed_events", "notifications", "outbox"} {
			expect(t, emfMetric(emf.TableRows, map[string]string{emf.DimTable: table}))
			expect(t, emfMetric(emf.TableBytes, map[string]string{emf.DimTable: table}))
		}
	})
	t.Run("tasks", func(t *testing.T) {
		ecs := map[string]string{"ClusterName": pub.cluster, "ServiceName": pub.service}
		expect(t, Metric{Namespace: "ECS/ContainerInsights", Name: "RunningTaskCount", Dimensions: ecs})
		expect(t, Metric{Namespace: "ECS/ContainerInsights", Name: "DesiredTaskCount", Dimensions: ecs})
	})
	t.Run("alarms", func(t *testing.T) {
		var want []string
		for _, a := range alarms(t, pipe) {
			want = append(want, fmt.Sprintf("arn:aws:cloudwatch:%s:%s:alarm:%s", SampleRegion, SampleAccount, a.props.String("AlarmName")))
		}
		if diff := cmp.Diff(sorted(want), sorted(alarmARNs)); diff != "" {
			t.Errorf("the alarm widget's alarms (-the stack's +shown):\n%s", diff)
		}
	})
}
