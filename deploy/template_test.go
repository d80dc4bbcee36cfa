package deploy

// Structural tests of the templates: what an AWS emulator cannot show
// (moto skips subscriptions, queue policies, RDS Proxy, Aurora, ElastiCache,
// Secrets Manager secrets and autoscaling; see TestStackDeploysIntoMoto) is
// read from the templates here, through the same evaluation the rendered
// files come from.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/topology"
)

var allTemplates = []string{ParentTemplate, DataTemplate, PipelineTemplate}

func loadTemplate(t *testing.T, name string) *Template {
	t.Helper()
	tpl, err := LoadTemplate(name)
	if err != nil {
		t.Fatal(err)
	}
	return tpl
}

// TestRenderedFilesAreUpToDate: deploy/ecs/*.json and topology/topology.json
// are rendered from the templates and must not be edited by hand.
func TestRenderedFilesAreUpToDate(t *testing.T) {
	files, err := RenderFiles()
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range files {
		got, err := os.ReadFile(filepath.Join("..", path))
		if err != nil {
			t.Errorf("%s: %v (run `go generate ./deploy`)", path, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from its rendering of the templates; edit the template and run `go generate ./deploy` (-rendered +file):\n%s",
				path, cmp.Diff(string(want), string(got)))
		}
	}
	// topology.Default(), what the code runs with, is the rendered file.
	top, err := RenderTopology()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(top, topology.Default()); diff != "" {
		t.Errorf("topology.Default() differs from pipeline.yaml's topology (-template +code):\n%s", diff)
	}
}

// reference is one Ref, Fn::GetAtt or ${...} in a template.
type reference struct {
	kind, target, attr, where string
}

// references walks v and returns every reference it makes.
func references(v any, where string) []reference {
	var out []reference
	switch v := v.(type) {
	case *Map:
		fn, arg, ok := v.Intrinsic()
		switch {
		case ok && fn == "Ref":
			s, _ := arg.(string)
			return []reference{{"Ref", s, "", where}}
		case ok && fn == "Fn::GetAtt":
			l, _ := arg.([]any)
			if len(l) == 2 {
				res, _ := l[0].(string)
				attr, _ := l[1].(string)
				return []reference{{"GetAtt", res, attr, where}}
			}
		case ok && fn == "Fn::Sub":
			text, vars := "", NewMap()
			switch a := arg.(type) {
			case string:
				text = a
			case []any:
				if len(a) == 2 {
					text, _ = a[0].(string)
					vars, _ = a[1].(*Map)
					out = append(out, references(vars, where)...)
				}
			}
			for _, m := range subVar.FindAllStringSubmatch(text, -1) {
				name := m[1]
				if strings.HasPrefix(name, "!") || vars.Has(name) {
					continue
				}
				if res, attr, dotted := strings.Cut(name, "."); dotted {
					out = append(out, reference{"GetAtt", res, attr, where})
				} else {
					out = append(out, reference{"Ref", name, "", where})
				}
			}
			return out
		case ok && fn == "Condition":
			s, _ := arg.(string)
			return []reference{{"Condition", s, "", where}}
		case ok && fn == "Fn::If":
			l, _ := arg.([]any)
			if len(l) == 3 {
				s, _ := l[0].(string)
				out = append(out, reference{"Condition", s, "", where})
				return append(out, references(l[1:], where)...)
			}
		}
		for _, k := range v.Keys() {
			out = append(out, references(v.Get(k), where+"."+k)...)
		}
	case []any:
		for i, x := range v {
			out = append(out, references(x, fmt.Sprintf("%s[%d]", where, i))...)
		}
	}
	return out
}

// templateReferences is every reference of a template: in its resources
// (properties, conditions, dependencies), outputs and conditions.
func templateReferences(tpl *Template) []reference {
	var out []reference
	for _, name := range tpl.Resources.Keys() {
		r, _ := tpl.Resource(name)
		out = append(out, references(r.Properties, name)...)
		if c := r.Raw.String("Condition"); c != "" {
			out = append(out, reference{"Condition", c, "", name})
		}
		deps := r.Raw.List("DependsOn")
		if s := r.Raw.String("DependsOn"); s != "" {
			deps = []any{s}
		}
		for _, d := range deps {
			s, _ := d.(string)
			out = append(out, reference{"DependsOn", s, "", name})
		}
	}
	out = append(out, references(tpl.Outputs, "Outputs")...)
	out = append(out, references(tpl.Conditions, "Conditions")...)
	return out
}

var pseudoParameters = []string{"AWS::AccountId", "AWS::NoValue", "AWS::Partition", "AWS::Region", "AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}

// TestEveryReferenceResolves: every Ref, Fn::GetAtt and ${...} of every
// template names a parameter, pseudo parameter or resource of its own
// template (a nested stack's Outputs.NAME an output of the child), every
// condition exists, and the whole deployment evaluates: each resource's
// properties and each output, through both branches of every condition,
// with every attribute one the resource type has.
func TestEveryReferenceResolves(t *testing.T) {
	for _, name := range allTemplates {
		tpl := loadTemplate(t, name)
		for _, r := range templateReferences(tpl) {
			switch r.kind {
			case "Ref":
				if !tpl.Parameters.Has(r.target) && !tpl.Resources.Has(r.target) && !slices.Contains(pseudoParameters, r.target) {
					t.Errorf("%s %s: Ref %s: no such parameter or resource", name, r.where, r.target)
				}
			case "GetAtt", "DependsOn":
				res, ok := tpl.Resource(r.target)
				if !ok {
					t.Errorf("%s %s: %s %s: no such resource", name, r.where, r.kind, r.target)
					continue
				}
				if out, nested := strings.CutPrefix(r.attr, "Outputs."); nested && res.Type == "AWS::CloudFormation::Stack" {
					child := loadTemplate(t, res.Properties.String("TemplateURL"))
					if !child.Outputs.Has(out) {
						t.Errorf("%s %s: %s has no output %s", name, r.where, child.Name, out)
					}
				}
			case "Condition":
				if !tpl.Conditions.Has(r.target) {
					t.Errorf("%s %s: no condition %s", name, r.where, r.target)
				}
			}
		}
	}
	// Evaluate everything, with each condition's both outcomes.
	for _, smtp := range []string{"", "smtp.example.com:587"} {
		params := SampleParameters()
		params["SMTPAddr"] = smtp
		d, err := Render(params)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range d.stacks() {
			for _, res := range st.T.Resources.Keys() {
				if _, err := st.Properties(res); err != nil {
					t.Error(err)
				}
			}
			for _, out := range st.T.Outputs.Keys() {
				if _, err := st.Output(out); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

// TestEveryParameterIsUsed: a parameter nothing reads is a setting that
// silently does nothing.
func TestEveryParameterIsUsed(t *testing.T) {
	for _, name := range allTemplates {
		tpl := loadTemplate(t, name)
		used := map[string]bool{}
		for _, r := range templateReferences(tpl) {
			if r.kind == "Ref" {
				used[r.target] = true
			}
		}
		for _, p := range tpl.Parameters.Keys() {
			if !used[p] {
				t.Errorf("%s: parameter %s is never used", name, p)
			}
			if tpl.Parameters.Map(p).String("Description") == "" {
				t.Errorf("%s: parameter %s has no description", name, p)
			}
		}
	}
}

// TestParentPassesEveryParameter: the parent stack is the one place a
// value is set; it passes each nested stack every parameter that stack
// declares, and none it does not.
func TestParentPassesEveryParameter(t *testing.T) {
	parent := loadTemplate(t, ParentTemplate)
	stacks := parent.ResourcesOfType("AWS::CloudFormation::Stack")
	if len(stacks) != 2 {
		t.Fatalf("%d nested stacks, want data and pipeline", len(stacks))
	}
	for _, s := range stacks {
		child := loadTemplate(t, s.Properties.String("TemplateURL"))
		passed := s.Properties.Map("Parameters").Keys()
		if diff := cmp.Diff(sorted(child.Parameters.Keys()), sorted(passed)); diff != "" {
			t.Errorf("%s (%s): parameters (-declared +passed):\n%s", s.Logical, child.Name, diff)
		}
		// A parameter both declare is passed straight through, with the
		// parent's constraints.
		for _, p := range passed {
			pp, cp := parent.Parameters.Map(p), child.Parameters.Map(p)
			if pp == nil {
				continue
			}
			if fn, arg, _ := s.Properties.Map("Parameters").Map(p).Intrinsic(); fn != "Ref" && fn != "Fn::Join" || fn == "Ref" && arg != p {
				t.Errorf("%s: parameter %s is passed as %s %v, want !Ref %s", s.Logical, p, fn, arg, p)
			}
			for _, c := range []string{"Type", "Default", "MinValue", "MaxValue", "AllowedPattern"} {
				if pv, cv := pp.Get(c), cp.Get(c); pv != nil && cv != nil && fmt.Sprint(pv) != fmt.Sprint(cv) {
					t.Errorf("parameter %s: %s is %v in the parent and %v in %s", p, c, pv, cv, child.Name)
				}
			}
		}
	}
}

func sorted(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }

// TestOneParameterSetsBothEnds: the values that must agree between the
// proxy and the worker are one parameter each: IdleClientTimeout and
// DB_PROXY_CLIENT_TIMEOUT, MaxConnectionsPercent, DB_MAX_CONNS, the
// autoscaling bounds, max_connections. The test sets each to an odd value
// in the parent and finds it at both ends.
func TestOneParameterSetsBothEnds(t *testing.T) {
	params := SampleParameters()
	maps.Copy(params, map[string]string{
		"ProxyIdleClientTimeout": "4321", "ProxyMaxConnectionsPercent": "37", "DBMaxConns": "7",
		"MinTasks": "3", "MaxTasks": "9", "DatabaseMaxConnections": "1234",
	})
	d, err := Render(params)
	if err != nil {
		t.Fatal(err)
	}
	data, pipe := mustStack(t, d.Data), mustStack(t, d.Pipeline)
	worker, migrate := container(t, pipe, WorkerTaskDefinition, WorkerContainer), container(t, pipe, MigrateTaskDefinition, "migrate")
	checks := []struct{ what, got, want string }{
		{"proxy IdleClientTimeout", prop(t, data, "Proxy", "IdleClientTimeout"), "4321"},
		{"worker DB_PROXY_CLIENT_TIMEOUT", worker.Env["DB_PROXY_CLIENT_TIMEOUT"], "4321s"},
		{"migration DB_PROXY_CLIENT_TIMEOUT", migrate.Env["DB_PROXY_CLIENT_TIMEOUT"], "4321s"},
		{"proxy MaxConnectionsPercent", prop(t, data, "ProxyTargetGroup", "ConnectionPoolConfigurationInfo.MaxConnectionsPercent"), "37"},
		{"worker DB_MAX_CONNS", worker.Env["DB_MAX_CONNS"], "7"},
		{"autoscaling MinCapacity", prop(t, pipe, "ScalableTarget", "MinCapacity"), "3"},
		{"autoscaling MaxCapacity", prop(t, pipe, "ScalableTarget", "MaxCapacity"), "9"},
		{"max_connections", prop(t, data, "DatabaseParameterGroup", "Parameters.max_connections"), "1234"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %q, want %q", c.what, c.got, c.want)
		}
	}
	// And the worker's duration parses as the proxy's seconds.
	if d, err := time.ParseDuration(worker.Env["DB_PROXY_CLIENT_TIMEOUT"]); err != nil || d != 4321*time.Second {
		t.Errorf("DB_PROXY_CLIENT_TIMEOUT %q is not 4321 seconds: %v", worker.Env["DB_PROXY_CLIENT_TIMEOUT"], err)
	}
}

func mustStack(t *testing.T, f func() (*Stack, error)) *Stack {
	t.Helper()
	st, err := f()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func container(t *testing.T, st *Stack, taskDef, name string) Container {
	t.Helper()
	c, err := st.Container(taskDef, name)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// prop returns a resource's evaluated property at a dotted path, as text.
func prop(t *testing.T, st *Stack, logical, path string) string {
	t.Helper()
	v := any(mustProps(t, st, logical))
	for k := range strings.SplitSeq(path, ".") {
		m, ok := v.(*Map)
		if !ok || !m.Has(k) {
			t.Fatalf("%s %s has no %s", st.T.Name, logical, path)
		}
		v = m.Get(k)
	}
	return scalarString(v)
}

// outputString is a stack output that must be a string.
func outputString(t *testing.T, st *Stack, name string) string {
	t.Helper()
	v, err := st.Output(name)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := v.(string)
	if !ok {
		t.Fatalf("%s: output %s is %#v, want a string", st.T.Name, name, v)
	}
	return s
}

// mapOf is v, which must be a mapping.
func mapOf(t *testing.T, what string, v any) *Map {
	t.Helper()
	m, ok := v.(*Map)
	if !ok {
		t.Fatalf("%s is %#v, want a mapping", what, v)
	}
	return m
}

func mustProps(t *testing.T, st *Stack, logical string) *Map {
	t.Helper()
	p, err := st.Properties(logical)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func atoi(t *testing.T, what, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s = %q, not a number", what, s)
	}
	return n
}

// TestConnectionBudget: with the default sizes, every worker task can hold
// all DB_MAX_CONNS of its pool's connections on the database at once, even
// while a deployment runs MaximumPercent of the most tasks, with the
// migration task beside them: tasks x pool + migration <= max_connections x
// MaxConnectionsPercent / 100. The parameters' descriptions state it, so an
// operator changing one knows the others.
func TestConnectionBudget(t *testing.T) {
	d, err := RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	parent, data, pipe := d.Parent, mustStack(t, d.Data), mustStack(t, d.Pipeline)
	maxTasks := atoi(t, "MaxTasks", scalarString(parent.Params["MaxTasks"]))
	pool := atoi(t, "DB_MAX_CONNS", container(t, pipe, WorkerTaskDefinition, WorkerContainer).Env["DB_MAX_CONNS"])
	migration := atoi(t, "migration DB_MAX_CONNS", container(t, pipe, MigrateTaskDefinition, "migrate").Env["DB_MAX_CONNS"])
	surge := atoi(t, "MaximumPercent", prop(t, pipe, "Service", "DeploymentConfiguration.MaximumPercent"))
	maxConns := atoi(t, "max_connections", prop(t, data, "DatabaseParameterGroup", "Parameters.max_connections"))
	percent := atoi(t, "MaxConnectionsPercent", prop(t, data, "ProxyTargetGroup", "ConnectionPoolConfigurationInfo.MaxConnectionsPercent"))
	need := maxTasks*surge/100*pool + migration
	budget := maxConns * percent / 100
	t.Logf("%d tasks x %d%% x %d connections + %d = %d <= %d x %d%% = %d", maxTasks, surge, pool, migration, need, maxConns, percent, budget)
	if need > budget {
		t.Errorf("the default sizes need %d database connections through the proxy, which opens at most %d", need, budget)
	}
	if surge != 200 {
		t.Errorf("MaximumPercent %d: the descriptions' arithmetic assumes 200 (2 x MaxTasks)", surge)
	}
	budgeted := map[*Template][]string{parent.T: {"MaxTasks", "DBMaxConns", "ProxyMaxConnectionsPercent"}, pipe.T: {"MaxTasks", "DBMaxConns"}, data.T: {"ProxyMaxConnectionsPercent"}}
	for tpl, params := range budgeted {
		for _, p := range params {
			desc := strings.Join(strings.Fields(tpl.Parameters.Map(p).String("Description")), " ")
			if !strings.Contains(desc, "2 x MaxTasks x DBMaxConns + 2 <= DatabaseMaxConnections x ProxyMaxConnectionsPercent / 100") {
				t.Errorf("%s: %s's description does not state the connection budget: %q", tpl.Name, p, desc)
			}
		}
	}
	desc := strings.Join(strings.Fields(pipe.T.Parameters.Map("MaxTasks").String("Description")), " ")
	if want := fmt.Sprintf("2 x %d x %d + %d = %d <= %d x %d / 100 = %d", maxTasks, pool, migration, need, maxConns, percent, budget); !strings.Contains(desc, want) {
		t.Errorf("pipeline.yaml MaxTasks's description should show the defaults' arithmetic %q: %q", want, desc)
	}
}

// TestProxyRequiresTLSAndIAM: RDS Proxy refuses plaintext and passwords
// from clients (the tasks authenticate with IAM tokens over TLS), logs in
// to Aurora with its own credentials from Secrets Manager, and targets the
// cluster; Redis requires TLS and the AUTH token, and the worker's REDIS_URL
// secret names both.
func TestProxyRequiresTLSAndIAM(t *testing.T) {
	d, err := RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	data, pipe := mustStack(t, d.Data), mustStack(t, d.Pipeline)
	proxy := mustProps(t, data, "Proxy")
	if proxy.Get("RequireTLS") != true || proxy.String("EngineFamily") != "POSTGRESQL" {
		t.Errorf("proxy RequireTLS %v, engine %v; want TLS required, POSTGRESQL", proxy.Get("RequireTLS"), proxy.Get("EngineFamily"))
	}
	dbSecret := ref(t, data, "DatabaseSecret")
	auth := proxy.List("Auth")
	if len(auth) == 0 {
		t.Fatal("proxy has no Auth")
	}
	for _, a := range auth {
		m := mapOf(t, "proxy Auth", a)
		if m.String("IAMAuth") != "REQUIRED" || m.String("AuthScheme") != "SECRETS" || m.String("SecretArn") != dbSecret {
			t.Errorf("proxy Auth %s: want IAMAuth REQUIRED with the database secret %s", mustJSON(m), dbSecret)
		}
	}
	tg := mustProps(t, data, "ProxyTargetGroup")
	if tg.String("TargetGroupName") != "default" || tg.String("DBProxyName") != ref(t, data, "Proxy") ||
		!slices.Equal(tg.List("DBClusterIdentifiers"), []any{ref(t, data, "DatabaseCluster")}) {
		t.Errorf("proxy target group %s: want the default group of the proxy on the Aurora cluster", mustJSON(tg))
	}
	cluster := mustProps(t, data, "DatabaseCluster")
	if cluster.String("Engine") != "aurora-postgresql" || cluster.Get("StorageEncrypted") != true ||
		!strings.Contains(cluster.String("MasterUserPassword"), "{{resolve:secretsmanager:"+dbSecret+":") {
		t.Errorf("cluster %s: want encrypted aurora-postgresql with the proxy's secret as master credentials", mustJSON(cluster))
	}
	for _, inst := range data.T.ResourcesOfType("AWS::RDS::DBInstance") {
		p := mustProps(t, data, inst.Logical)
		if p.String("DBClusterIdentifier") != ref(t, data, "DatabaseCluster") || p.String("DBParameterGroupName") != ref(t, data, "DatabaseParameterGroup") || p.Get("PubliclyAccessible") != false {
			t.Errorf("instance %s: want a private member of the cluster with the parameter group", inst.Logical)
		}
	}
	redis := mustProps(t, data, "Redis")
	if redis.Get("TransitEncryptionEnabled") != true || redis.Get("AtRestEncryptionEnabled") != true ||
		!strings.Contains(redis.String("AuthToken"), "{{resolve:secretsmanager:"+ref(t, data, "RedisAuthToken")+":") {
		t.Errorf("redis %s: want TLS, encryption at rest and the AUTH token secret", mustJSON(redis))
	}
	// What the worker gets, through the parent's wiring.
	worker := container(t, pipe, WorkerTaskDefinition, WorkerContainer)
	secrets, err := d.SecretValues(worker)
	if err != nil {
		t.Fatal(err)
	}
	redisEndpoint := outputString(t, data, "RedisEndpoint")
	token, err := d.SecretValue(ref(t, data, "RedisAuthToken"))
	if err != nil {
		t.Fatal(err)
	}
	token, _ = jsonKey(token, "token")
	if want := "rediss://:" + token + "@" + redisEndpoint + "/0"; secrets["REDIS_URL"] != want {
		t.Errorf("the worker's REDIS_URL would be %q, want %q", secrets["REDIS_URL"], want)
	}
	proxyEndpoint := outputString(t, data, "ProxyEndpoint")
	if got, want := worker.Env["DATABASE_URL"], "@"+proxyEndpoint+":5432/"; !strings.Contains(got, want) {
		t.Errorf("the worker's DATABASE_URL %q is not the proxy's endpoint %s", got, proxyEndpoint)
	}
	if worker.Env["DB_PROXY"] != "rds-proxy" || worker.Env["DB_IAM_AUTH"] != "true" {
		t.Errorf("the worker has DB_PROXY=%q DB_IAM_AUTH=%q, want rds-proxy with IAM", worker.Env["DB_PROXY"], worker.Env["DB_IAM_AUTH"])
	}
}

func ref(t *testing.T, st *Stack, logical string) string {
	t.Helper()
	r, _ := st.T.Resource(logical)
	v, err := st.ref(r)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(v)
}

// mustJSON is v's JSON for a failure message (or the error, if it has none).
func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// TestWorkerServiceDeploysSafely: ECS gives the worker longer than it
// drains for before SIGKILL, replaces tasks that fail `worker healthcheck`,
// rolls a failing deployment back, and lets autoscaling own the count.
func TestWorkerServiceDeploysSafely(t *testing.T) {
	_, pipe := sample(t)
	worker := container(t, pipe, WorkerTaskDefinition, WorkerContainer)
	stop, err := strconv.Atoi(scalarString(worker.Properties.Get("StopTimeout")))
	if err != nil {
		t.Fatal("the worker container has no StopTimeout")
	}
	drain, err := time.ParseDuration(worker.Env["WORKER_SHUTDOWN_TIMEOUT"])
	if err != nil {
		t.Fatalf("WORKER_SHUTDOWN_TIMEOUT %q: %v", worker.Env["WORKER_SHUTDOWN_TIMEOUT"], err)
	}
	// The drain, plus a flush of the deletes and the exit, before SIGKILL.
	if time.Duration(stop)*time.Second < drain+3*time.Second || stop > 120 {
		t.Errorf("stopTimeout %ds, WORKER_SHUTDOWN_TIMEOUT %s: want the stop timeout at least 3s longer, and at most Fargate's 120s", stop, drain)
	}
	hc := worker.Properties.Map("HealthCheck")
	if cmd := hc.List("Command"); !slices.Equal(cmd, []any{"CMD", "/worker", "healthcheck"}) {
		t.Errorf("health check %v, want [CMD /worker healthcheck]", cmd)
	}
	svc := mustProps(t, pipe, "Service")
	cb := svc.Map("DeploymentConfiguration").Map("DeploymentCircuitBreaker")
	if cb.Get("Enable") != true || cb.Get("Rollback") != true {
		t.Errorf("deployment circuit breaker %s, want enabled with rollback", mustJSON(cb))
	}
	if svc.String("LaunchType") != "FARGATE" || svc.Has("DesiredCount") {
		t.Errorf("service: launch type %q, DesiredCount set %v; want FARGATE and autoscaling owning the count", svc.String("LaunchType"), svc.Has("DesiredCount"))
	}
	if svc.String("TaskDefinition") != ref(t, pipe, WorkerTaskDefinition) {
		t.Errorf("service runs %s, want the worker's task definition", svc.String("TaskDefinition"))
	}
	td := mustProps(t, pipe, WorkerTaskDefinition)
	if td.String("NetworkMode") != "awsvpc" || !slices.Equal(td.List("RequiresCompatibilities"), []any{"FARGATE"}) {
		t.Errorf("worker task definition: want awsvpc on FARGATE")
	}
	mig := container(t, pipe, MigrateTaskDefinition, "migrate")
	if ep := mig.Properties.List("EntryPoint"); !slices.Equal(ep, []any{"/orderctl", "migrate"}) || mig.Image != worker.Image {
		t.Errorf("migration task: entry point %v, image %s; want /orderctl migrate on the worker's image", ep, mig.Image)
	}
	for _, k := range []string{"AWS_REGION", "DB_PROXY", "DATABASE_URL", "DB_IAM_AUTH", "DB_PROXY_CLIENT_TIMEOUT"} {
		if mig.Env[k] != worker.Env[k] {
			t.Errorf("migration task %s=%q, worker %q: it must connect as the worker does", k, mig.Env[k], worker.Env[k])
		}
	}
}

// TestAutoscalingTracksBacklogPerTask: target tracking on the messages
// visible in the three queues divided by the running tasks (metric math,
// AWS's recipe for queue workers), between MinTasks and MaxTasks.
func TestAutoscalingTracksBacklogPerTask(t *testing.T) {
	_, pipe := sample(t)
	target := mustProps(t, pipe, "ScalableTarget")
	cluster, service := ref(t, pipe, "Cluster"), prop(t, pipe, "Service", "ServiceName")
	if got, want := target.String("ResourceId"), "service/"+cluster+"/"+service; got != want || target.String("ScalableDimension") != "ecs:service:DesiredCount" {
		t.Errorf("scalable target %s %s, want %s ecs:service:DesiredCount", got, target.String("ScalableDimension"), want)
	}
	for k, p := range map[string]string{"MinCapacity": "MinTasks", "MaxCapacity": "MaxTasks"} {
		if r, _ := pipe.T.Resource("ScalableTarget"); mustJSON(r.Properties.Get(k)) != fmt.Sprintf(`{"Ref":%q}`, p) {
			t.Errorf("scalable target %s is not !Ref %s", k, p)
		}
	}
	pol := mustProps(t, pipe, "BacklogPerTaskPolicy")
	cfg := pol.Map("TargetTrackingScalingPolicyConfiguration")
	if pol.String("PolicyType") != "TargetTrackingScaling" || pol.String("ScalingTargetId") != ref(t, pipe, "ScalableTarget") {
		t.Fatalf("scaling policy %s, want target tracking on the scalable target", mustJSON(pol))
	}
	if r, _ := pipe.T.Resource("BacklogPerTaskPolicy"); mustJSON(r.Properties.Map("TargetTrackingScalingPolicyConfiguration").Get("TargetValue")) != `{"Ref":"TargetBacklogPerTask"}` {
		t.Errorf("target value is not !Ref TargetBacklogPerTask")
	}
	queues := map[string]string{} // metric id → queue name
	var tasks, expr string
	returned := 0
	for _, m := range cfg.Map("CustomizedMetricSpecification").List("Metrics") {
		m := mapOf(t, "metric", m)
		if m.Get("ReturnData") == true {
			returned++
			expr = m.String("Expression")
		}
		stat := m.Map("MetricStat")
		if stat == nil {
			continue
		}
		metric := m.Map("MetricStat").Map("Metric")
		dims := map[string]string{}
		for _, d := range metric.List("Dimensions") {
			dim := mapOf(t, "dimension", d)
			dims[dim.String("Name")] = dim.String("Value")
		}
		switch metric.String("Namespace") + "/" + metric.String("MetricName") {
		case "AWS/SQS/ApproximateNumberOfMessagesVisible":
			queues[m.String("Id")] = dims["QueueName"]
		case "ECS/ContainerInsights/RunningTaskCount":
			if dims["ClusterName"] != cluster || dims["ServiceName"] != service {
				t.Errorf("running tasks of %v, want cluster %s service %s", dims, cluster, service)
			}
			tasks = m.String("Id")
		default:
			t.Errorf("unexpected metric %s", mustJSON(metric))
		}
	}
	var names, ids []string
	for id, q := range queues {
		names, ids = append(names, q), append(ids, id)
	}
	top := topology.Default().WithPrefix("prod-")
	var want []string
	for _, q := range top.Queues {
		want = append(want, q.Name)
	}
	if diff := cmp.Diff(sorted(want), sorted(names)); diff != "" {
		t.Errorf("backlog metrics' queues (-topology +metrics):\n%s", diff)
	}
	slices.Sort(ids)
	if returned != 1 || tasks == "" || !strings.HasPrefix(strings.ReplaceAll(expr, " ", ""), "(") || !strings.HasSuffix(strings.ReplaceAll(expr, " ", ""), ")/"+tasks) {
		t.Errorf("expression %q (%d returned): want (sum of the queues) / %s, the only one returned", expr, returned, tasks)
	}
	for _, id := range ids {
		if !strings.Contains(expr, id) {
			t.Errorf("expression %q leaves out queue metric %s", expr, id)
		}
	}
	cl := mustProps(t, pipe, "Cluster")
	if s := mustJSON(cl.List("ClusterSettings")); s != `[{"Name":"containerInsights","Value":"enabled"}]` {
		t.Errorf("cluster settings %s: RunningTaskCount needs Container Insights", s)
	}
}

// TestSubscriptionsMatchTheTopology: each queue of topology.json (what the
// code applies and checks) is subscribed in the template with its filter
// policy and raw delivery, and the queues' policy lets the topic deliver.
func TestSubscriptionsMatchTheTopology(t *testing.T) {
	_, pipe := sample(t)
	top := topology.Default().WithPrefix("prod-")
	topic := ref(t, pipe, "Topic")
	subs := map[string]*Map{} // by queue ARN
	for _, s := range pipe.T.ResourcesOfType("AWS::SNS::Subscription") {
		p := mustProps(t, pipe, s.Logical)
		if p.String("TopicArn") != topic {
			t.Errorf("subscription %s is to %s, want %s", s.Logical, p.String("TopicArn"), topic)
		}
		subs[p.String("Endpoint")] = p
	}
	if len(subs) != len(top.Queues) {
		t.Errorf("%d subscriptions, topology.json has %d queues", len(subs), len(top.Queues))
	}
	var policy *Map
	if ps := pipe.T.ResourcesOfType("AWS::SQS::QueuePolicy"); len(ps) == 1 {
		policy = mustProps(t, pipe, ps[0].Logical)
	} else {
		t.Fatalf("%d queue policies, want one", len(ps))
	}
	for _, q := range top.Queues {
		arn := fmt.Sprintf("arn:aws:sqs:%s:%s:%s", SampleRegion, SampleAccount, q.Name)
		s := subs[arn]
		if s == nil {
			t.Errorf("queue %s has no subscription", q.Name)
			continue
		}
		if s.String("Protocol") != "sqs" || s.Get("RawMessageDelivery") != true || s.String("FilterPolicyScope") != "MessageAttributes" {
			t.Errorf("subscription of %s: want sqs, raw delivery, filter on message attributes", q.Name)
		}
		var got, want any
		_ = json.Unmarshal([]byte(mustJSON(s.Map("FilterPolicy"))), &got)
		_ = json.Unmarshal([]byte(q.FilterPolicy()), &want)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("filter policy of %s (-topology.json +template):\n%s", q.Name, diff)
		}
		url := fmt.Sprintf("https://sqs.%s.amazonaws.com/%s/%s", SampleRegion, SampleAccount, q.Name)
		if !slices.Contains(policy.List("Queues"), any(url)) {
			t.Errorf("the queue policy does not apply to %s", q.Name)
		}
		allowed := false
		for _, st := range policy.Map("PolicyDocument").List("Statement") {
			st := mapOf(t, "statement", st)
			res := st.Get("Resource")
			if st.String("Effect") == "Allow" && st.Map("Principal").String("Service") == "sns.amazonaws.com" &&
				mustJSON(st.Get("Action")) == `"sqs:SendMessage"` && strings.Contains(mustJSON(res), `"`+arn+`"`) &&
				st.Map("Condition").Map("ArnEquals").String("aws:SourceArn") == topic {
				allowed = true
			}
		}
		if !allowed {
			t.Errorf("the queue policy does not let %s send to %s", topic, q.Name)
		}
	}
}
