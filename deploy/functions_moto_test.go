package deploy

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/topology"
)

// TestFunctionsStackDeploysIntoMoto deploys functions.yaml, as shipped,
// into moto's CloudFormation with the parameters it would get in
// pipeline.yaml's place (the sample's data-tier outputs), a 30 s function
// timeout and its code in moto's S3 (a stand-in zip: moto runs nothing),
// waits for CREATE_COMPLETE and checks what moto built: the three
// functions (runtime, handler, timeout, role, ORDERPIPE_HANDLER), their
// event source mappings (their queue, batch size, enabled), the queues'
// visibility timeout (6 x 30 + 20 s) and redrive, and each role's trust and
// its policy by the least-privilege rules of TestFunctionRolesAreLeastPrivilege.
func TestFunctionsStackDeploysIntoMoto(t *testing.T) {
	cfg := motoConfig(t)
	prefix := "t" + randomHex(8) + "-"
	params := SampleParameters()
	params["NamePrefix"] = prefix
	d, err := Render(params)
	if err != nil {
		t.Fatal(err)
	}
	bucket := prefix + "artifacts"
	putMotoObject(t, cfg, bucket, "lambda/bootstrap.zip", standInZip(t))
	fn, err := d.Functions(map[string]string{"CodeS3Bucket": bucket, "CodeS3Key": "lambda/bootstrap.zip", "FunctionTimeout": "30", "BatchSize": "5"})
	if err != nil {
		t.Fatal(err)
	}
	body, err := TemplateBody(FunctionsTemplate)
	if err != nil {
		t.Fatal(err)
	}
	cf := cloudformation.NewFromConfig(cfg)
	stack := "orderpipe-fn-test-" + randomHex(12)
	var cfnParams []cfntypes.Parameter
	for k, v := range fn.Given {
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
	physical := stackResources(ctx, t, cf, stack)

	top := topology.Default().WithPrefix(prefix)
	sqsc := sqs.NewFromConfig(cfg)
	for _, q := range top.Queues {
		title := strings.ToUpper(q.Handler[:1]) + q.Handler[1:]
		f := motoJSON(ctx, t, cfg, "/2015-03-31/functions/"+url.PathEscape(prefix+"orderpipe-"+q.Handler))
		conf, _ := f["Configuration"].(map[string]any)
		env, _ := conf["Environment"].(map[string]any)
		vars, _ := env["Variables"].(map[string]any)
		got := fmt.Sprintf("%v %v %v %v", conf["Runtime"], conf["Handler"], conf["Timeout"], vars["ORDERPIPE_HANDLER"])
		if want := "provided.al2023 bootstrap 30 " + q.Handler; got != want {
			t.Errorf("function of %s: %s, want %s", q.Handler, got, want)
		}
		if role, _ := conf["Role"].(string); !strings.HasSuffix(role, "/"+physical[title+"Role"]) {
			t.Errorf("function of %s runs as %s, want %s", q.Handler, role, physical[title+"Role"])
		}

		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		u, err := sqsc.GetQueueUrl(call, &sqs.GetQueueUrlInput{QueueName: aws.String(q.Name)})
		if err != nil {
			cancel()
			t.Fatalf("queue %s: %v", q.Name, err)
		}
		attrs, err := sqsc.GetQueueAttributes(call, &sqs.GetQueueAttributesInput{QueueUrl: u.QueueUrl, AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll}})
		cancel()
		if err != nil {
			t.Fatalf("attributes of %s: %v", q.Name, err)
		}
		if vis, _ := strconv.Atoi(attrs.Attributes["VisibilityTimeout"]); vis < 6*30+20 {
			t.Errorf("queue %s: visibility timeout %d s, want at least 6 x 30 + 20", q.Name, vis)
		}
		if !strings.Contains(attrs.Attributes["RedrivePolicy"], top.DLQName(q)) {
			t.Errorf("queue %s redrives %s, want to %s", q.Name, attrs.Attributes["RedrivePolicy"], top.DLQName(q))
		}

		esms := motoJSON(ctx, t, cfg, "/2015-03-31/event-source-mappings/?FunctionName="+url.QueryEscape(prefix+"orderpipe-"+q.Handler))
		list, _ := esms["EventSourceMappings"].([]any)
		if len(list) != 1 {
			t.Errorf("function of %s: %d event source mappings, want 1", q.Handler, len(list))
			continue
		}
		m, _ := list[0].(map[string]any)
		if src, _ := m["EventSourceArn"].(string); src != attrs.Attributes["QueueArn"] || fmt.Sprint(m["BatchSize"]) != "5" || m["State"] != "Enabled" {
			t.Errorf("event source mapping of %s: %v on %v, state %v; want batch size 5 on %s, Enabled", q.Handler, m["BatchSize"], m["EventSourceArn"], m["State"], attrs.Attributes["QueueArn"])
		}
	}
	checkFunctionRoles(ctx, t, cfg, physical)
}

// checkFunctionRoles reads each deployed role's trust and inline policy
// and holds the policy to what the template declares (the least-privilege
// test reads the template's).
func checkFunctionRoles(ctx context.Context, t *testing.T, cfg aws.Config, physical map[string]string) {
	t.Helper()
	iamc := iam.NewFromConfig(cfg)
	_, st := sampleFunctions(t, nil)
	for _, role := range []string{"BillingRole", "NotificationRole", "InventoryRole"} {
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		got, err := iamc.GetRole(call, &iam.GetRoleInput{RoleName: aws.String(physical[role])})
		if err != nil {
			cancel()
			t.Fatalf("role %s: %v", role, err)
		}
		if trust := policyText(aws.ToString(got.Role.AssumeRolePolicyDocument)); !strings.Contains(trust, `"lambda.amazonaws.com"`) {
			t.Errorf("role %s trusts %s, want lambda.amazonaws.com", role, trust)
		}
		names, err := iamc.ListRolePolicies(call, &iam.ListRolePoliciesInput{RoleName: aws.String(physical[role])})
		if err != nil || len(names.PolicyNames) != 1 {
			cancel()
			t.Fatalf("role %s: policies %v (%v), want one inline policy", role, names, err)
		}
		doc, err := iamc.GetRolePolicy(call, &iam.GetRolePolicyInput{RoleName: aws.String(physical[role]), PolicyName: aws.String(names.PolicyNames[0])})
		cancel()
		if err != nil {
			t.Fatalf("role %s policy: %v", role, err)
		}
		deployed := parsePolicy(t, "deployed "+role, []byte(policyText(aws.ToString(doc.PolicyDocument))))
		if want := rolePolicy(t, st, role); fmt.Sprint(want.actions()) != fmt.Sprint(deployed.actions()) {
			t.Errorf("deployed %s grants %v, the template %v", role, deployed.actions(), want.actions())
		}
	}
}

// stackResources are the physical ids of a stack's resources by logical id.
func stackResources(ctx context.Context, t *testing.T, cf *cloudformation.Client, stack string) map[string]string {
	t.Helper()
	out := map[string]string{}
	p := cloudformation.NewListStackResourcesPaginator(cf, &cloudformation.ListStackResourcesInput{StackName: aws.String(stack)})
	for p.HasMorePages() {
		call, cancel := context.WithTimeout(ctx, motoCallTimeout)
		page, err := p.NextPage(call)
		cancel()
		if err != nil {
			t.Fatalf("list resources of %s: %v", stack, err)
		}
		for _, r := range page.StackResourceSummaries {
			out[aws.ToString(r.LogicalResourceId)] = aws.ToString(r.PhysicalResourceId)
		}
	}
	return out
}

// standInZip is a function zip with a bootstrap that is not the real one:
// moto stores the code and runs nothing.
func standInZip(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	w, err := z.Create("bootstrap")
	if err == nil {
		_, err = io.WriteString(w, "#!/bin/sh\nexit 1\n")
	}
	if err == nil {
		err = z.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// putMotoObject creates a bucket in moto's S3 and puts an object in it,
// with plain HTTP (moto checks no signature), each call within
// motoCallTimeout.
func putMotoObject(t *testing.T, cfg aws.Config, bucket, key string, body []byte) {
	t.Helper()
	base := aws.ToString(cfg.BaseEndpoint)
	create := fmt.Sprintf(`<CreateBucketConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><LocationConstraint>%s</LocationConstraint></CreateBucketConfiguration>`, cfg.Region)
	for _, put := range []struct {
		path string
		body []byte
	}{{"/" + bucket, []byte(create)}, {"/" + bucket + "/" + key, body}} {
		ctx, cancel := context.WithTimeout(context.Background(), motoCallTimeout)
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, base+put.path, bytes.NewReader(put.body))
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261129/"+cfg.Region+"/s3/aws4_request, SignedHeaders=host, Signature=0")
		resp, err := cfg.HTTPClient.Do(req)
		cancel()
		if err != nil {
			t.Fatalf("moto S3 PUT %s: %v", put.path, err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("moto S3 PUT %s: %s", put.path, resp.Status)
		}
	}
}

// motoJSON GETs a Lambda API path from moto and decodes the JSON answer,
// within motoCallTimeout.
func motoJSON(ctx context.Context, t *testing.T, cfg aws.Config, path string) map[string]any {
	t.Helper()
	call, cancel := context.WithTimeout(ctx, motoCallTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(call, http.MethodGet, aws.ToString(cfg.BaseEndpoint)+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "AWS4-HMAC-SHA256 Credential=test/20261129/"+cfg.Region+"/lambda/aws4_request, SignedHeaders=host, Signature=0")
	resp, err := cfg.HTTPClient.Do(req)
	if err != nil {
		t.Fatalf("moto GET %s: %v", path, err)
	}
	defer func() { _ = resp.Body.Close() }()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("moto GET %s: %s (%v)", path, resp.Status, err)
	}
	return out
}
