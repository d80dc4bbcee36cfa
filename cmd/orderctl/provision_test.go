package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
)

// TestProvisionCheckReportsDrift runs the orderctl binary against a fresh
// topology on the local emulator: `provision --check` exits 0 while the
// deployment matches topology.json; after a subscription's filter policy is
// changed behind its back, it exits 1 and names the subscription, the
// attribute and both values, and changes nothing; `provision` converges it
// and the check passes again.
func TestProvisionCheckReportsDrift(t *testing.T) {
	env := testenv.Open(t, "orderctl")
	top, ap := env.Topology(t)
	prefix := strings.TrimSuffix(top.Topic, topology.Default().Topic)
	bin := buildOrderctl(t)
	vars := []string{
		"AWS_ENDPOINT_URL=" + testenv.Endpoint, "AWS_REGION=" + testenv.Region,
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "ORDERPIPE_NAME_PREFIX=" + prefix,
	}

	out, code := runOrderctl(t, bin, vars, "provision", "--check")
	t.Logf("provision --check on a fresh topology: exit %d\n%s", code, out)
	if code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("provision --check on a fresh topology: exit %d, want 0 and no drift", code)
	}

	// Change the billing queue's filter policy, as someone in the console might.
	snsc := sns.NewFromConfig(env.AWS)
	sub := subscriptionOf(t, snsc, ap.TopicARN, ap.Queues["billing"].ARN)
	changed := `{"event_type":["order.placed"]}`
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := snsc.SetSubscriptionAttributes(ctx, &sns.SetSubscriptionAttributesInput{
		SubscriptionArn: aws.String(sub), AttributeName: aws.String("FilterPolicy"), AttributeValue: aws.String(changed),
	}); err != nil {
		t.Fatal(err)
	}

	out, code = runOrderctl(t, bin, vars, "provision", "--check")
	t.Logf("provision --check after the change: exit %d\n%s", code, out)
	billing, _ := top.Queue("billing")
	for _, want := range []string{"subscription of " + billing.Name, sub, "FilterPolicy", changed, billing.FilterPolicy(), "1 difference(s)"} {
		if !strings.Contains(out, want) {
			t.Errorf("the drift report does not name %q", want)
		}
	}
	if code != 1 || strings.Count(out, "drift:") != 1 {
		t.Errorf("exit %d with %d drift lines, want exit 1 and the one change", code, strings.Count(out, "drift:"))
	}
	// --check changed nothing; provision converges.
	drift, err := topology.Check(ctx, snsc, sqs.NewFromConfig(env.AWS), top)
	if err != nil || len(drift) != 1 {
		t.Fatalf("after --check: %v, %v; want the change still there", drift, err)
	}
	if out, code := runOrderctl(t, bin, vars, "provision"); code != 0 {
		t.Fatalf("provision: exit %d\n%s", code, out)
	}
	if out, code := runOrderctl(t, bin, vars, "provision", "--check"); code != 0 {
		t.Errorf("provision --check after provision: exit %d\n%s", code, out)
	}
}

// TestProvisionCheckFindsMissingResources: a topology never provisioned is
// reported resource by resource, not as an error.
func TestProvisionCheckFindsMissingResources(t *testing.T) {
	env := testenv.Open(t, "orderctl")
	top := topology.Default().WithPrefix(testenv.Prefix())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out strings.Builder
	err := checkTopology(ctx, sns.NewFromConfig(env.AWS), sqs.NewFromConfig(env.AWS), top, &out)
	if err == nil {
		t.Fatal("check of a topology never provisioned passed")
	}
	// The topic and, per queue, the queue and its DLQ.
	if n := strings.Count(out.String(), "exists is missing"); n != 1+2*len(top.Queues) {
		t.Errorf("%d missing resources reported, want %d:\n%s", n, 1+2*len(top.Queues), out.String())
	}
}

func subscriptionOf(t *testing.T, snsc *sns.Client, topicARN, queueARN string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := snsc.ListSubscriptionsByTopic(ctx, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out.Subscriptions {
		if aws.ToString(s.Endpoint) == queueARN {
			return aws.ToString(s.SubscriptionArn)
		}
	}
	t.Fatalf("no subscription of %s to %s", queueARN, topicARN)
	return ""
}

// buildOrderctl builds the binary the exit codes are a promise of.
func buildOrderctl(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	bin := filepath.Join(t.TempDir(), "orderctl")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/orderpipe/orderpipe/cmd/orderctl").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runOrderctl runs the binary (within a minute) with the test's
// environment minus anything AWS or orderpipe, plus vars; it returns the
// combined output and the exit code.
func runOrderctl(t *testing.T, bin string, vars []string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); !strings.HasPrefix(k, "AWS_") && !strings.HasPrefix(k, "ORDERPIPE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, vars...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("%s: %v\n%s", bin, err, out)
	return "", 0
}
