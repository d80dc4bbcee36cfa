package deploy

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/topology"
)

// sampleFunctions is functions.yaml in the sample deployment, in
// pipeline.yaml's place, with extra parameters.
func sampleFunctions(t *testing.T, extra map[string]string) (*Deployment, *Stack) {
	t.Helper()
	d, err := RenderSample()
	if err != nil {
		t.Fatal(err)
	}
	params := map[string]string{}
	maps.Copy(params, SampleFunctionCode)
	maps.Copy(params, extra)
	st, err := d.Functions(params)
	if err != nil {
		t.Fatal(err)
	}
	return d, st
}

func props(t *testing.T, st *Stack, logical string) *Map {
	t.Helper()
	p, err := st.Properties(logical)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestFunctionsRunOneHandlerEach: three functions, one binary (the
// provided.al2023 bootstrap), ORDERPIPE_HANDLER choosing the handler; the
// function timeout and memory are the parameters; 1 or 2 connections each.
func TestFunctionsRunOneHandlerEach(t *testing.T) {
	_, st := sampleFunctions(t, map[string]string{"FunctionTimeout": "30", "FunctionDBMaxConns": "1"})
	if got := len(st.T.ResourcesOfType("AWS::Lambda::Function")); got != 3 {
		t.Errorf("%d functions, want 3", got)
	}
	for handler, logical := range FunctionResources {
		p := props(t, st, logical)
		env, err := st.FunctionEnvironment(logical)
		if err != nil {
			t.Fatal(err)
		}
		got := fmt.Sprintf("%s %s %v timeout %s conns %s", p.String("Runtime"), p.String("Handler"), p.List("Architectures"), scalarString(p.Get("Timeout")), env["DB_MAX_CONNS"])
		if want := "provided.al2023 bootstrap [x86_64] timeout 30 conns 1"; got != want {
			t.Errorf("%s: %s, want %s", logical, got, want)
		}
		if env["ORDERPIPE_HANDLER"] != handler || env["ORDERPIPE_NAME_PREFIX"] != "prod-" {
			t.Errorf("%s: ORDERPIPE_HANDLER=%q ORDERPIPE_NAME_PREFIX=%q, want %q and the prefix", logical, env["ORDERPIPE_HANDLER"], env["ORDERPIPE_NAME_PREFIX"], handler)
		}
		if _, smtp := env["SMTP_SECRET_ID"]; smtp != (handler == "notification") {
			t.Errorf("%s: SMTP_SECRET_ID set = %v; only notification sends email", logical, smtp)
		}
		for k, v := range env {
			if strings.Contains(strings.ToLower(k), "password") || strings.Contains(v, "sample-ses-smtp-password") {
				t.Errorf("%s: %s carries a secret in the environment; the function reads it from Secrets Manager", logical, k)
			}
		}
	}
}

// TestEventSourceMappingsReportBatchItemFailures: each function has one
// mapping, on its own queue, with partial batch responses, and the batch
// size, batching window and maximum concurrency are the parameters.
func TestEventSourceMappingsReportBatchItemFailures(t *testing.T) {
	_, st := sampleFunctions(t, map[string]string{"BatchSize": "7", "MaximumBatchingWindowInSeconds": "3", "MaximumConcurrency": "5"})
	esms := st.T.ResourcesOfType("AWS::Lambda::EventSourceMapping")
	if len(esms) != 3 {
		t.Fatalf("%d event source mappings, want 3", len(esms))
	}
	for _, r := range esms {
		raw := r.Properties
		for key, param := range map[string]string{"BatchSize": "BatchSize", "MaximumBatchingWindowInSeconds": "MaximumBatchingWindowInSeconds"} {
			if ref := raw.Map(key).String("Ref"); ref != param {
				t.Errorf("%s: %s is not the parameter %s (%v)", r.Logical, key, param, raw.Get(key))
			}
		}
		if ref := raw.Map("ScalingConfig").Map("MaximumConcurrency").String("Ref"); ref != "MaximumConcurrency" {
			t.Errorf("%s: ScalingConfig.MaximumConcurrency is not the parameter", r.Logical)
		}
		p := props(t, st, r.Logical)
		got := fmt.Sprintf("%v %s %s %s", p.List("FunctionResponseTypes"), scalarString(p.Get("BatchSize")),
			scalarString(p.Get("MaximumBatchingWindowInSeconds")), scalarString(p.Map("ScalingConfig").Get("MaximumConcurrency")))
		if want := "[ReportBatchItemFailures] 7 3 5"; got != want {
			t.Errorf("%s: %s, want %s", r.Logical, got, want)
		}
		handler := strings.TrimSuffix(r.Logical, "EventSource")
		fn, queue := raw.Map("FunctionName").String("Ref"), raw.Map("EventSourceArn").List("Fn::GetAtt")
		if fn != handler+"Function" || len(queue) != 2 || queue[0] != handler+"Queue" {
			t.Errorf("%s: function %s, queue %v; want %sFunction on %sQueue", r.Logical, fn, queue, handler, handler)
		}
	}
}

// TestQueueVisibilityIsSixFunctionTimeouts: for every function timeout
// the template allows, every queue's visibility timeout is at least six
// times it plus the largest batching window (AWS's rule for an SQS event
// source: a function retried within one visibility timeout, and records
// held while a batch is gathered).
func TestQueueVisibilityIsSixFunctionTimeouts(t *testing.T) {
	d, _ := sampleFunctions(t, nil)
	tpl, err := LoadTemplate(FunctionsTemplate)
	if err != nil {
		t.Fatal(err)
	}
	window, err := intOf(tpl.Parameters.Map("MaximumBatchingWindowInSeconds").Get("MaxValue"))
	if err != nil {
		t.Fatal(err)
	}
	allowed := tpl.Parameters.Map("FunctionTimeout").List("AllowedValues")
	if len(allowed) == 0 || len(allowed) != tpl.Mappings.Map("QueueVisibility").Len() {
		t.Fatalf("FunctionTimeout allows %v; the QueueVisibility mapping has %d entries", allowed, tpl.Mappings.Map("QueueVisibility").Len())
	}
	for _, v := range allowed {
		timeout := scalarString(v)
		params := map[string]string{"FunctionTimeout": timeout}
		maps.Copy(params, SampleFunctionCode)
		st, err := d.Functions(params)
		if err != nil {
			t.Fatal(err)
		}
		seconds, _ := strconv.Atoi(timeout)
		for _, q := range []string{"BillingQueue", "NotificationQueue", "InventoryQueue"} {
			vis, err := intOf(props(t, st, q).Get("VisibilityTimeout"))
			if err != nil {
				t.Fatalf("%s: %v", q, err)
			}
			if vis < 6*seconds+window {
				t.Errorf("FunctionTimeout %d: %s's visibility timeout is %d s, want at least 6 x %d + %d = %d", seconds, q, vis, seconds, window, 6*seconds+window)
			}
		}
	}
}

// TestFunctionsTopologyIsThePipelines: the topic, queues, DLQs,
// subscriptions and queue policy are pipeline.yaml's (topology.json is
// rendered from those), but for the queues' visibility timeout.
func TestFunctionsTopologyIsThePipelines(t *testing.T) {
	d, st := sampleFunctions(t, nil)
	pipe, err := d.Pipeline()
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{"AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::SNS::Subscription", "AWS::SQS::QueuePolicy"} {
		var names []string
		for _, r := range pipe.T.ResourcesOfType(typ) {
			if r.Logical == "AlarmTopic" { // the alarms are the ECS stack's
				continue
			}
			names = append(names, r.Logical)
			want, got := jsonOf(t, props(t, pipe, r.Logical)), jsonOf(t, props(t, st, r.Logical))
			delete(want, "VisibilityTimeout")
			delete(got, "VisibilityTimeout")
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("%s (-pipeline.yaml +functions.yaml):\n%s", r.Logical, diff)
			}
		}
		var mine []string
		for _, r := range st.T.ResourcesOfType(typ) {
			mine = append(mine, r.Logical)
		}
		if diff := cmp.Diff(names, mine); diff != "" {
			t.Errorf("%s resources (-pipeline.yaml +functions.yaml):\n%s", typ, diff)
		}
	}
}

func jsonOf(t *testing.T, m *Map) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFunctionRolesAreLeastPrivilege: each function's role grants what its
// handler's code calls and what its event source mapping calls, on that
// function's own queue, DLQ, secrets, database user and log group; nothing
// of another handler's; "*" only where AWS allows nothing narrower
// (sns:ListTopics, the VPC network interfaces). Together the three grant
// exactly the SQS, SNS and database actions the worker's code calls
// (codeActions), so a new call in the code fails here until granted.
func TestFunctionRolesAreLeastPrivilege(t *testing.T) {
	d, st := sampleFunctions(t, nil)
	data, err := d.Data()
	if err != nil {
		t.Fatal(err)
	}
	proxy := outputString(t, data, "ProxyResourceId")
	arn := func(service, resource string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, SampleRegion, SampleAccount, resource)
	}
	top := topology.Default().WithPrefix("prod-")
	redis, _ := st.Params["RedisURLSecretArn"].(string)
	smtp, _ := st.Params["SMTPSecretArn"].(string)
	eni := []string{"ec2:AssignPrivateIpAddresses", "ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:UnassignPrivateIpAddresses"}
	union := map[string]bool{}
	for _, q := range top.Queues {
		role := strings.ToUpper(q.Handler[:1]) + q.Handler[1:] + "Role"
		p := rolePolicy(t, st, role)
		need := map[string][]string{
			"rds-db:connect":                 {arn("rds-db", "dbuser:"+proxy+"/orderpipe")},
			"secretsmanager:GetSecretValue":  {redis},
			"logs:CreateLogStream":           {arn("logs", "log-group:/aws/lambda/prod-orderpipe-"+q.Handler+":log-stream:2026/11/29/[$LATEST]0123")},
			"logs:PutLogEvents":              {arn("logs", "log-group:/aws/lambda/prod-orderpipe-"+q.Handler+":log-stream:2026/11/29/[$LATEST]0123")},
			"sqs:ReceiveMessage":             {arn("sqs", q.Name)},
			"sqs:DeleteMessage":              {arn("sqs", q.Name)},
			"sqs:ChangeMessageVisibility":    {arn("sqs", q.Name)},
			"sqs:GetQueueAttributes":         {arn("sqs", q.Name)},
			"sqs:GetQueueUrl":                {arn("sqs", q.Name), arn("sqs", top.DLQName(q))},
			"sqs:SendMessage":                {arn("sqs", top.DLQName(q))},
			"ec2:CreateNetworkInterface":     {"*"},
			"ec2:DescribeNetworkInterfaces":  {"*"},
			"ec2:DeleteNetworkInterface":     {"*"},
			"ec2:AssignPrivateIpAddresses":   {"*"},
			"ec2:UnassignPrivateIpAddresses": {"*"},
		}
		switch q.Handler {
		case "notification":
			need["secretsmanager:GetSecretValue"] = append(need["secretsmanager:GetSecretValue"], smtp)
		case "inventory": // the outbox relay
			need["sns:ListTopics"] = []string{"*"}
			need["sns:Publish"] = []string{arn("sns", top.Topic)}
		}
		var want []string
		for a := range need {
			want = append(want, a)
		}
		sort.Strings(want)
		if diff := cmp.Diff(want, p.actions()); diff != "" {
			t.Errorf("%s actions (-needed +granted):\n%s", role, diff)
		}
		for action, resources := range need {
			for _, r := range resources {
				if !p.allows(action, r) {
					t.Errorf("%s does not allow %s on %s", role, action, r)
				}
			}
		}
		for _, s := range p.Statement {
			for _, r := range s.Resource {
				if r == "*" && !slices.Equal(s.Action, []string{"sns:ListTopics"}) && !sameSet(s.Action, eni) {
					t.Errorf("%s: statement %q grants %v on *", role, s.Sid, s.Action)
				}
				for _, other := range top.Queues {
					if other.Handler != q.Handler && (strings.HasSuffix(r, ":"+other.Name) || strings.HasSuffix(r, ":"+top.DLQName(other)) ||
						strings.HasSuffix(r, "orderpipe-"+other.Handler)) {
						t.Errorf("%s: statement %q grants on %s, %s's", role, s.Sid, r, other.Handler)
					}
				}
			}
		}
		for _, a := range p.actions() {
			union[a] = true
		}
	}
	var granted []string
	for a := range union {
		if strings.HasPrefix(a, "sqs:") || strings.HasPrefix(a, "sns:") || strings.HasPrefix(a, "rds-db:") {
			granted = append(granted, a)
		}
	}
	sort.Strings(granted)
	var called []string
	for a := range codeActions(t) {
		called = append(called, a)
	}
	// The event source mapping receives, deletes and reads the queue's
	// attributes itself; the worker's code calls them too.
	sort.Strings(called)
	if diff := cmp.Diff(called, granted); diff != "" {
		t.Errorf("SQS, SNS and database actions (-called by the code +granted to the functions):\n%s", diff)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	sort.Strings(a)
	sort.Strings(b)
	return slices.Equal(a, b)
}
