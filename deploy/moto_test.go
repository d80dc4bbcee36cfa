package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/topology"
)

// Bounds of the emulator test: each call, the deploy, the delete.
const (
	motoCallTimeout   = 10 * time.Second
	motoDeployTimeout = 90 * time.Second
	motoDeleteTimeout = 30 * time.Second
)

// motoModels are the resource types of pipeline.yaml moto's CloudFormation
// builds; TestStackDeploysIntoMoto checks each as deployed.
var motoModels = []string{
	"AWS::SNS::Topic", "AWS::SQS::Queue", "AWS::IAM::Role", "AWS::Logs::LogGroup",
	"AWS::ECS::Cluster", "AWS::ECS::TaskDefinition", "AWS::ECS::Service", "AWS::CloudWatch::Dashboard",
}

// motoSkips are the types moto skips (with a warning), and the structural
// test that covers each instead. data.yaml as a whole is not deployed: moto
// fails a stack whose outputs or properties read an attribute (Fn::GetAtt)
// of a resource it skipped, and every output of data.yaml is one (the
// proxy's endpoint, Redis's).
var motoSkips = map[string]string{
	"AWS::SNS::Subscription":                      "TestSubscriptionsMatchTheTopology",
	"AWS::SQS::QueuePolicy":                       "TestSubscriptionsMatchTheTopology",
	"AWS::ApplicationAutoScaling::ScalableTarget": "TestAutoscalingTracksBacklogPerTask, TestOneParameterSetsBothEnds",
	"AWS::ApplicationAutoScaling::ScalingPolicy":  "TestAutoscalingTracksBacklogPerTask",
	"AWS::CloudWatch::Alarm":                      "TestAlarmsWatchEverySignal",
}

// motoConfig is an AWS configuration for moto's server at MOTO_URL (as
// `scripts/stack.sh env` exports it), in the sample account (moto's
// default) and region. It is built by hand, so nothing in the environment
// (AWS_ENDPOINT_URL points at the SNS/SQS emulator) redirects it.
func motoConfig(t *testing.T) aws.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test: skipped by -short")
	}
	endpoint := os.Getenv("MOTO_URL")
	if endpoint == "" {
		endpoint = "http://127.0.0.1:5000"
	}
	client := &http.Client{Timeout: motoCallTimeout}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, endpoint+"/moto-api/", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("moto's server at %s (run `make up`): %v", endpoint, err)
	}
	resp.Body.Close()
	return aws.Config{
		Region:       SampleRegion,
		BaseEndpoint: aws.String(endpoint),
		Credentials:  credentials.NewStaticCredentialsProvider("test", "test", ""),
		HTTPClient:   client,
	}
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

// TestStackDeploysIntoMoto deploys pipeline.yaml, as shipped, into moto's
// CloudFormation with the parameters the parent stack would pass it (the
// data stack's outputs as the sample renders them) and a fresh name
// prefix, waits for CREATE_COMPLETE, and checks every resource moto builds
// against the declaration: the topic; the queues' and DLQs' names,
// visibility timeouts, retention, long polling, handler tags and redrive to
// the right DLQ with the right maxReceiveCount; the log group; the roles'
// trust and policies, against what the code calls and what the deployed
// task definitions name; the cluster, the service and both task
// definitions' images, environment, secrets, health check and stop timeout.
func TestStackDeploysIntoMoto(t *testing.T) {
	cfg := motoConfig(t)
	prefix := "t" + randomHex(8) + "-"
	params := SampleParameters()
	params["NamePrefix"] = prefix
	d, err := Render(params)
	if err != nil {
		t.Fatal(err)
	}
	pipe := mustStack(t, d.Pipeline)
	body, err := TemplateBody(PipelineTemplate)
	if err != nil {
		t.Fatal(err)
	}
	cf := cloudformation.NewFromConfig(cfg)
	stack := "orderpipe-test-" + randomHex(8)
	var cfnParams []cfntypes.Parameter
	for k, v := range pipe.Given {
		cfnParams = append(cfnParams, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	ctx, cancel := context.WithTimeout(context.Background(), motoDeployTimeout+time.Minute)
	defer cancel()
	call, callCancel := context.WithTimeout(ctx, motoCallTimeout)
	_, err = cf.CreateStack(call, &cloudformation.CreateStackInput{
		StackName: aws.String(stack), TemplateBody: aws.String(string(body)), Parameters: cfnParams,
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam},
	})
	callCancel()
	if err != nil {
		t.Fatalf("create stack %s: %v", stack, err)
	}
	t.Cleanup(func() { deleteStack(t, cf, stack) })
	s := waitForStack(t, cf, stack, motoDeployTimeout, "CREATE_COMPLETE")
	t.Logf("stack %s (prefix %s): %s", stack, prefix, s.StackStatus)

	resources := checkStackResources(ctx, t, cf, pipe.T, stack)
	outputs := map[string]string{}
	for _, o := range s.Outputs {
		outputs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	top := topology.Default().WithPrefix(prefix)
	checkTopic(ctx, t, cfg, top, outputs)
	checkQueues(ctx, t, cfg, top, outputs)
	worker, migrate := checkTasks(ctx, t, cfg, pipe, resources, outputs)
	checkRoles(ctx, t, cfg, d, resources, worker, migrate)
	checkLogGroup(ctx, t, cfg, pipe, outputs, worker)
	checkDashboard(ctx, t, cfg, pipe, resources)
	checkAlarmTopic(ctx, t, cfg, pipe, outputs)

	// What moto skipped is what provision --check finds missing against
	// the declaration: the subscriptions and the queue policy, nothing else.
	drift, err := topology.Check(ctx, sns.NewFromConfig(cfg), sqs.NewFromConfig(cfg), top)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, dr := range drift {
		got = append(got, dr.Resource+" "+dr.Attribute)
	}
	var want []string
	for _, q := range top.Queues {
		want = append(want, "queue "+q.Name+" Policy", "subscription of "+q.Name+" exists")
	}
	if diff := cmp.Diff(sorted(want), sorted(got)); diff != "" {
		t.Errorf("topology.Check against the deployed stack (-moto's skips +drift):\n%s", diff)
	}
}

// waitForStack polls until the stack leaves *_IN_PROGRESS, within timeout,
// and fails unless it reached want.
func waitForStack(t *testing.T, cf *cloudformation.Client, stack string, timeout time.Duration, want string) cfntypes.Stack {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), motoCallTimeout)
		out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
		cancel()
		if err != nil {
			t.Fatalf("describe stack %s: %v", stack, err)
		}
		if len(out.Stacks) != 1 {
			t.Fatalf("describe stack %s: %d stacks", stack, len(out.Stacks))
		}
		s := out.Stacks[0]
		status := string(s.StackStatus)
		if !strings.HasSuffix(status, "_IN_PROGRESS") {
			if status != want {
				t.Fatalf("stack %s is %s (%s), want %s", stack, status, aws.ToString(s.StackStatusReason), want)
			}
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack %s still %s after %s", stack, status, timeout)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func deleteStack(t *testing.T, cf *cloudformation.Client, stack string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), motoCallTimeout)
	_, err := cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String(stack)})
	cancel()
	if err != nil {
		t.Errorf("delete stack %s: %v", stack, err)
		return
	}
	deadline := time.Now().Add(motoDeleteTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), motoCallTimeout)
		out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String(stack)})
		cancel()
		if err != nil || len(out.Stacks) == 0 || out.Stacks[0].StackStatus == cfntypes.StackStatusDeleteComplete {
			return // moto forgets a deleted stack, or reports it DELETE_COMPLETE
		}
		if time.Now().After(deadline) {
			t.Errorf("stack %s still %s %s after the delete", stack, out.Stacks[0].StackStatus, motoDeleteTimeout)
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkStackResources checks that moto built every resource of a modelled
// type and skipped only the types the structural tests cover; it returns
// the physical ids by logical id.
func checkStackResources(ctx context.Context, t *testing.T, cf *cloudformation.Client, tpl *Template, stack string) map[string]string {
	t.Helper()
	physical := map[string]string{}
	p := cloudformation.NewListStackResourcesPaginator(cf, &cloudformation.ListStackResourcesInput{StackName: aws.String(stack)})
	for p.HasMorePages() {
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		page, err := p.NextPage(call)
		cancel()
		if err != nil {
			t.Fatalf("list resources of %s: %v", stack, err)
		}
		for _, r := range page.StackResourceSummaries {
			if id := aws.ToString(r.LogicalResourceId); id != "" { // moto lists what it skipped without one
				if r.ResourceStatus != cfntypes.ResourceStatusCreateComplete {
					t.Errorf("%s is %s", id, r.ResourceStatus)
				}
				physical[id] = aws.ToString(r.PhysicalResourceId)
			}
		}
	}
	var built, skipped []string
	for _, name := range tpl.Resources.Keys() {
		r, _ := tpl.Resource(name)
		switch {
		case slices.Contains(motoModels, r.Type):
			if physical[name] == "" {
				t.Errorf("moto did not build %s (%s)", name, r.Type)
			}
			built = append(built, name)
		case motoSkips[r.Type] != "":
			if physical[name] != "" {
				t.Errorf("moto built %s (%s), which this test expected it to skip: check it here", name, r.Type)
			}
			skipped = append(skipped, fmt.Sprintf("%s (%s: %s)", name, r.Type, motoSkips[r.Type]))
		default:
			t.Errorf("%s is a %s: say whether moto builds it (motoModels) or which structural test covers it (motoSkips)", name, r.Type)
		}
	}
	t.Logf("moto built %d resources: %s", len(built), strings.Join(built, ", "))
	t.Logf("moto skipped %d, covered by the structural tests: %s", len(skipped), strings.Join(skipped, "; "))
	return physical
}

func checkTopic(ctx context.Context, t *testing.T, cfg aws.Config, top topology.Topology, outputs map[string]string) {
	t.Helper()
	want := fmt.Sprintf("arn:aws:sns:%s:%s:%s", SampleRegion, SampleAccount, top.Topic)
	if outputs["TopicArn"] != want {
		t.Errorf("output TopicArn %q, want %q", outputs["TopicArn"], want)
	}
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	if _, err := sns.NewFromConfig(cfg).GetTopicAttributes(call, &sns.GetTopicAttributesInput{TopicArn: aws.String(want)}); err != nil {
		t.Errorf("topic %s: %v", want, err)
	}
}

// checkQueues checks each queue and DLQ of the topology as moto built them.
func checkQueues(ctx context.Context, t *testing.T, cfg aws.Config, top topology.Topology, outputs map[string]string) {
	t.Helper()
	sqsc := sqs.NewFromConfig(cfg)
	attrs := func(name string) (string, map[string]string) {
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		defer cancel()
		u, err := sqsc.GetQueueUrl(call, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			t.Fatalf("queue %s: %v", name, err)
		}
		out, err := sqsc.GetQueueAttributes(call, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		if err != nil {
			t.Fatalf("attributes of %s: %v", name, err)
		}
		return aws.ToString(u.QueueUrl), out.Attributes
	}
	for _, q := range top.Queues {
		title := strings.ToUpper(q.Handler[:1]) + q.Handler[1:]
		dlqURL, dlq := attrs(top.DLQName(q))
		url, got := attrs(q.Name)
		// moto's GetQueueUrl answers with its own host; the output has SQS's.
		if !sameQueue(outputs[title+"QueueUrl"], url) || !sameQueue(outputs[title+"DLQUrl"], dlqURL) {
			t.Errorf("outputs %sQueueUrl %q, %sDLQUrl %q; want %q, %q", title, outputs[title+"QueueUrl"], title, outputs[title+"DLQUrl"], url, dlqURL)
		}
		want := map[string]string{
			"VisibilityTimeout":             strconv.Itoa(q.VisibilityTimeoutSeconds),
			"MessageRetentionPeriod":        strconv.Itoa(top.MessageRetentionSeconds),
			"ReceiveMessageWaitTimeSeconds": strconv.Itoa(top.ReceiveWaitSeconds),
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("queue %s: %s = %q, want %q", q.Name, k, got[k], v)
			}
		}
		if dlq["MessageRetentionPeriod"] != strconv.Itoa(top.DLQMessageRetentionSeconds) {
			t.Errorf("DLQ %s: MessageRetentionPeriod = %q, want %d", top.DLQName(q), dlq["MessageRetentionPeriod"], top.DLQMessageRetentionSeconds)
		}
		var redrive struct {
			DeadLetterTargetArn string      `json:"deadLetterTargetArn"`
			MaxReceiveCount     json.Number `json:"maxReceiveCount"`
		}
		_ = json.Unmarshal([]byte(got["RedrivePolicy"]), &redrive) // maxReceiveCount: a number, or a string of one
		if redrive.DeadLetterTargetArn != dlq["QueueArn"] || redrive.MaxReceiveCount.String() != strconv.Itoa(q.MaxReceiveCount) {
			t.Errorf("queue %s redrives %q; want %s after %d receives", q.Name, got["RedrivePolicy"], dlq["QueueArn"], q.MaxReceiveCount)
		}
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		tags, err := sqsc.ListQueueTags(call, &sqs.ListQueueTagsInput{QueueUrl: aws.String(url)})
		cancel()
		if err != nil || tags.Tags["orderpipe:handler"] != q.Handler {
			t.Errorf("queue %s: tags %v (%v), want orderpipe:handler=%s", q.Name, tags, err, q.Handler)
		}
	}
}

// sameQueue reports whether two queue URLs name the same account and queue.
func sameQueue(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Path != "" && ua.Path == ub.Path
}

// deployedTask reads a task definition from moto's ECS as the tests' task.
func deployedTask(ctx context.Context, t *testing.T, ecsc *ecs.Client, arn string) (task, *ecs.DescribeTaskDefinitionOutput) {
	t.Helper()
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	out, err := ecsc.DescribeTaskDefinition(call, &ecs.DescribeTaskDefinitionInput{TaskDefinition: aws.String(arn)})
	if err != nil {
		t.Fatalf("task definition %s: %v", arn, err)
	}
	b, err := json.Marshal(out.TaskDefinition) // the SDK's field names, which task reads
	if err != nil {
		t.Fatalf("task definition %s: %v", arn, err)
	}
	var td task
	if err := json.Unmarshal(b, &td); err != nil || len(td.ContainerDefinitions) != 1 {
		t.Fatalf("task definition %s: %v, %d containers", arn, err, len(td.ContainerDefinitions))
	}
	return td, out
}

// checkTasks checks the cluster, the service and both task definitions as
// moto registered them against the template's evaluation with the same
// parameters. moto's ECS keeps a task definition's family, containers and
// memory, not its roles, network mode, CPU or compatibilities, and a
// service's cluster, name and task definition, not its deployment or
// network configuration: TestWorkerServiceDeploysSafely reads those.
func checkTasks(ctx context.Context, t *testing.T, cfg aws.Config, pipe *Stack, physical, outputs map[string]string) (worker, migrate task) {
	t.Helper()
	ecsc := ecs.NewFromConfig(cfg)
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	cluster := physical["Cluster"]
	if outputs["ClusterName"] != cluster {
		t.Errorf("output ClusterName %q, cluster %q", outputs["ClusterName"], cluster)
	}
	svc, err := ecsc.DescribeServices(call, &ecs.DescribeServicesInput{Cluster: aws.String(cluster), Services: []string{outputs["ServiceName"]}})
	if err != nil || len(svc.Services) != 1 {
		t.Fatalf("service %s in cluster %s: %v", outputs["ServiceName"], cluster, err)
	}
	if got := aws.ToString(svc.Services[0].TaskDefinition); got != physical[WorkerTaskDefinition] {
		t.Errorf("service runs %s, want the worker's task definition %s", got, physical[WorkerTaskDefinition])
	}
	for _, tc := range []struct {
		logical, container string
		td                 *task
	}{{WorkerTaskDefinition, WorkerContainer, &worker}, {MigrateTaskDefinition, "migrate", &migrate}} {
		want := container(t, pipe, tc.logical, tc.container)
		td, raw := deployedTask(ctx, t, ecsc, physical[tc.logical])
		*tc.td = td
		c := raw.TaskDefinition.ContainerDefinitions[0]
		if aws.ToString(raw.TaskDefinition.Family) != mustProps(t, pipe, tc.logical).String("Family") || aws.ToString(c.Name) != tc.container || aws.ToString(c.Image) != want.Image {
			t.Errorf("%s: family %s, container %s, image %s; want %s", tc.logical, aws.ToString(raw.TaskDefinition.Family), aws.ToString(c.Name), aws.ToString(c.Image), want.Image)
		}
		env, secrets := map[string]string{}, map[string]string{}
		for _, e := range c.Environment {
			env[aws.ToString(e.Name)] = aws.ToString(e.Value)
		}
		for _, s := range c.Secrets {
			secrets[aws.ToString(s.Name)] = aws.ToString(s.ValueFrom)
		}
		if diff := cmp.Diff(want.Env, env); diff != "" {
			t.Errorf("%s environment (-template +moto):\n%s", tc.logical, diff)
		}
		if diff := cmp.Diff(want.Secrets, secrets); diff != "" {
			t.Errorf("%s secrets (-template +moto):\n%s", tc.logical, diff)
		}
		if tc.logical == WorkerTaskDefinition {
			hc := c.HealthCheck
			if hc == nil || !slices.Equal(hc.Command, []string{"CMD", "/worker", "healthcheck"}) || aws.ToInt32(c.StopTimeout) != 30 {
				t.Errorf("worker: health check %+v, stop timeout %v; want /worker healthcheck and 30s", hc, aws.ToInt32(c.StopTimeout))
			}
		} else if !slices.Equal(c.EntryPoint, []string{"/orderctl", "migrate"}) {
			t.Errorf("migration entry point %v", c.EntryPoint)
		}
	}
	return worker, migrate
}

// checkRoles runs the policy tests' checks on the roles as moto built them,
// with the ARNs moto gave the queues and the topic, against the task
// definitions moto registered.
func checkRoles(ctx context.Context, t *testing.T, cfg aws.Config, d *Deployment, physical map[string]string, worker, migrate task) {
	t.Helper()
	iamc := iam.NewFromConfig(cfg)
	data := mustStack(t, d.Data)
	proxy := outputString(t, data, "ProxyResourceId")
	arn := func(service, resource string) string {
		return fmt.Sprintf("arn:aws:%s:%s:%s:%s", service, SampleRegion, SampleAccount, resource)
	}
	for role, check := range map[string]func(policy){
		TaskRole:      func(p policy) { checkTaskRole(t, p, worker, arn, proxy) },
		ExecutionRole: func(p policy) { checkExecutionRole(t, p, worker, migrate) },
		"MigrateTaskRole": func(p policy) {
			if diff := cmp.Diff([]string{"rds-db:connect"}, p.actions()); diff != "" {
				t.Errorf("migration task role actions (-want +granted):\n%s", diff)
			}
			if r := dbUserARN(t, migrate, arn, proxy); !p.allows("rds-db:connect", r) {
				t.Errorf("migration task role does not allow rds-db:connect on %s", r)
			}
		},
	} {
		name := physical[role]
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		got, err := iamc.GetRole(call, &iam.GetRoleInput{RoleName: aws.String(name)})
		if err != nil {
			cancel()
			t.Fatalf("role %s (%s): %v", role, name, err)
		}
		trust := policyText(aws.ToString(got.Role.AssumeRolePolicyDocument))
		if !strings.Contains(trust, `"ecs-tasks.amazonaws.com"`) || !strings.Contains(trust, `"sts:AssumeRole"`) {
			t.Errorf("role %s trusts %s, want ecs-tasks.amazonaws.com alone", role, trust)
		}
		names, err := iamc.ListRolePolicies(call, &iam.ListRolePoliciesInput{RoleName: aws.String(name)})
		if err != nil || len(names.PolicyNames) != 1 {
			cancel()
			t.Fatalf("role %s: policies %v (%v), want one inline policy", role, names, err)
		}
		doc, err := iamc.GetRolePolicy(call, &iam.GetRolePolicyInput{RoleName: aws.String(name), PolicyName: aws.String(names.PolicyNames[0])})
		cancel()
		if err != nil {
			t.Fatalf("role %s policy: %v", role, err)
		}
		check(parsePolicy(t, "deployed "+role, []byte(policyText(aws.ToString(doc.PolicyDocument)))))
	}
}

// policyText is a policy document as IAM returns it: URL-encoded JSON.
// moto returns the inline policies of roles its CloudFormation created as
// Python's repr of the document ({'Version': '2012-10-17', ...}), which is
// turned into JSON here.
func policyText(doc string) string {
	if strings.HasPrefix(doc, "{'") {
		return pythonToJSON(doc)
	}
	if s, err := url.QueryUnescape(doc); err == nil {
		return s
	}
	return doc
}

// pythonToJSON rewrites a Python literal of dicts, lists, strings and
// booleans as JSON: single-quoted strings become double-quoted.
func pythonToJSON(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			j := i + 1
			var str strings.Builder
			for ; j < len(s) && s[j] != '\''; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				str.WriteByte(s[j])
			}
			q, _ := json.Marshal(str.String()) //nolint:errchkjson // a string always encodes
			b.Write(q)
			i = j
		case strings.HasPrefix(s[i:], "True"):
			b.WriteString("true")
			i += 3
		case strings.HasPrefix(s[i:], "False"):
			b.WriteString("false")
			i += 4
		case strings.HasPrefix(s[i:], "None"):
			b.WriteString("null")
			i += 3
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func checkLogGroup(ctx context.Context, t *testing.T, cfg aws.Config, pipe *Stack, outputs map[string]string, worker task) {
	t.Helper()
	group := outputs["LogGroupName"]
	if g := worker.ContainerDefinitions[0].LogConfiguration.Options["awslogs-group"]; g != group || group == "" {
		t.Errorf("the worker logs to %q, the stack's log group is %q", g, group)
	}
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	out, err := cloudwatchlogs.NewFromConfig(cfg).DescribeLogGroups(call, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String(group)})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := strconv.Atoi(scalarString(pipe.Params["LogRetentionDays"]))
	for _, g := range out.LogGroups {
		if aws.ToString(g.LogGroupName) == group {
			if int(aws.ToInt32(g.RetentionInDays)) != want {
				t.Errorf("log group %s keeps %d days, want %d", group, aws.ToInt32(g.RetentionInDays), want)
			}
			return
		}
	}
	t.Errorf("no log group %s", group)
}

// checkDashboard reads the dashboard back from moto's CloudWatch and
// compares its body with the template's evaluation: moto's Fn::Sub filled
// in the same queue names, cluster, service and thresholds.
// TestDashboardShowsEverySignalPerHandler reads the evaluation.
func checkDashboard(ctx context.Context, t *testing.T, cfg aws.Config, pipe *Stack, physical map[string]string) {
	t.Helper()
	name := mustProps(t, pipe, "Dashboard").String("DashboardName")
	if physical["Dashboard"] != name {
		t.Errorf("dashboard %q, want %q", physical["Dashboard"], name)
	}
	got := motoDashboardBody(ctx, t, cfg, name)
	var gotJSON, wantJSON any
	if err := json.Unmarshal([]byte(got), &gotJSON); err != nil {
		t.Fatalf("dashboard %s as deployed is not JSON: %v", name, err)
	}
	if err := json.Unmarshal([]byte(prop(t, pipe, "Dashboard", "DashboardBody")), &wantJSON); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantJSON, gotJSON); diff != "" {
		t.Errorf("dashboard %s (-template +moto):\n%s", name, diff)
	}
}

// motoDashboardBody calls CloudWatch's GetDashboard on moto with the query
// protocol (this module has no CloudWatch client; moto does not check
// signatures, only the service named in the credential scope).
func motoDashboardBody(ctx context.Context, t *testing.T, cfg aws.Config, name string) string {
	t.Helper()
	form := url.Values{"Action": {"GetDashboard"}, "Version": {"2010-08-01"}, "DashboardName": {name}}
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(call, http.MethodPost, aws.ToString(cfg.BaseEndpoint)+"/", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20260101/"+cfg.Region+"/monitoring/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("GetDashboard %s: %v", name, err)
	}
	defer resp.Body.Close()
	var out struct {
		Body string `xml:"GetDashboardResult>DashboardBody"`
	}
	if err := xml.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GetDashboard %s: %s, %v", name, resp.Status, err)
	}
	return out.Body
}

// checkAlarmTopic: the topic every alarm notifies exists, named after the
// prefix, and is the stack's AlarmTopicArn output.
func checkAlarmTopic(ctx context.Context, t *testing.T, cfg aws.Config, pipe *Stack, outputs map[string]string) {
	t.Helper()
	want := fmt.Sprintf("arn:aws:sns:%s:%s:%s", SampleRegion, SampleAccount, mustProps(t, pipe, "AlarmTopic").String("TopicName"))
	if outputs["AlarmTopicArn"] != want {
		t.Errorf("output AlarmTopicArn %q, want %q", outputs["AlarmTopicArn"], want)
	}
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	if _, err := sns.NewFromConfig(cfg).GetTopicAttributes(call, &sns.GetTopicAttributesInput{TopicArn: aws.String(want)}); err != nil {
		t.Errorf("alarm topic %s: %v", want, err)
	}
}
