package app_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	smithymiddleware "github.com/aws/smithy-go/middleware"

	"github.com/orderpipe/orderpipe/catalog"
	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/metrics"
)

// TestAWSRequestsCountEveryAttempt: an SQS call through the worker's AWS
// configuration (app.AWSConfig, counted with app.CountAWSRequests) is one
// request on orderpipe_aws_requests_total{service="SQS"}; a call that
// fails and is retried counts every attempt, as many as reached the
// endpoint; a config counted twice still counts once.
func TestAWSRequestsCountEveryAttempt(t *testing.T) {
	t.Parallel()
	env := testenv.Open(t, "app")
	_, ap := env.Topology(t)
	proxy := testenv.StartAWSProxy(t, testenv.Endpoint)
	m := metrics.New()
	count := app.CountAWSRequests(m)
	ctx := context.Background()
	cfg, err := app.AWSConfig(ctx, testenv.Region, append(testenv.Emulator(),
		awsconfig.WithBaseEndpoint(proxy.URL), awsconfig.WithRetryMaxAttempts(3),
		awsconfig.WithAPIOptions([]func(*smithymiddleware.Stack) error{count, count}))...)
	if err != nil {
		t.Fatal(err)
	}
	sqsc := sqs.NewFromConfig(cfg)
	in := &sqs.GetQueueAttributesInput{QueueUrl: aws.String(ap.Queues["billing"].URL),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameApproximateNumberOfMessages}}
	if _, err := sqsc.GetQueueAttributes(ctx, in); err != nil {
		t.Fatal(err)
	}
	if got := awsRequests(t, m)["SQS GetQueueAttributes"]; got != 1 {
		t.Errorf("one successful call counted %v times, want 1", got)
	}
	proxy.Fail("GetQueueAttributes", testenv.AWSInternalError)
	if _, err := sqsc.GetQueueAttributes(ctx, in); err == nil {
		t.Fatal("a call answered 500 three times succeeded")
	}
	got, seen := awsRequests(t, m)["SQS GetQueueAttributes"], proxy.Calls("GetQueueAttributes")
	if got != 4 || seen != 4 {
		t.Errorf("after a call retried twice: counted %v, the endpoint saw %d; want 4 and 4 (1 + 3 attempts)", got, seen)
	}
}

// TestWorkerCountsItsAWSRequestsAndSMTPCommands: the worker's own clients
// count every request that reaches AWS, and its mailer every SMTP
// command: an order's email is one MAIL, RCPT, DATA and end of data.
func TestWorkerCountsItsAWSRequestsAndSMTPCommands(t *testing.T) {
	t.Parallel()
	s := newStack(t)
	s.addProducts(t, catalog.Product{SKU: "MUG", Name: "Mug", Price: 1200, Stock: 10})
	proxy := testenv.StartAWSProxy(t, testenv.Endpoint)
	m := metrics.New()
	s.startWorker(t, func(c *app.Config) {
		c.Metrics = m
		c.AWS = s.env.AWS.Copy()
		c.AWS.BaseEndpoint = aws.String(proxy.URL)
	})
	s.publish(t, s.placed("o1", "", "MUG", 1))
	s.waitProcessed(t, all3(1), 1)

	// A count is made before its request is sent: between polls, wait
	// for a moment when none is on its way.
	testenv.Eventually(t, 10*time.Second, func() error {
		reqs := awsRequests(t, m)
		var total float64
		for _, n := range reqs {
			total += n
		}
		if seen := proxy.CallsTotal(); total != float64(seen) || reqs["SQS ReceiveMessage"] < 3 {
			return fmt.Errorf("counted %v AWS requests (%v), the endpoint saw %d; want the same, 3 receives or more", total, reqs, seen)
		}
		return nil
	})
	smtp := family(t, m, "orderpipe_smtp_commands_total", "command")
	for _, c := range []string{"MAIL", "RCPT", "DATA", "DATA_END"} {
		if smtp[c] != 1 {
			t.Errorf("SMTP %s counted %v times for one email, want 1 (%v)", c, smtp[c], smtp)
		}
	}
}

// awsRequests reads orderpipe_aws_requests_total by "service operation".
func awsRequests(t *testing.T, m *metrics.Metrics) map[string]float64 {
	t.Helper()
	return family(t, m, "orderpipe_aws_requests_total", "service", "operation")
}

// family reads the counter name from m by its labels' values, joined by
// spaces.
func family(t *testing.T, m *metrics.Metrics, name string, labels ...string) map[string]float64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.GetMetric() {
			values := make([]string, len(labels))
			for i, want := range labels {
				for _, l := range s.GetLabel() {
					if l.GetName() == want {
						values[i] = l.GetValue()
					}
				}
			}
			out[strings.Join(values, " ")] += s.GetCounter().GetValue()
		}
	}
	return out
}
