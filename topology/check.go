package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Drift is one way the deployed topology differs from the declaration.
type Drift struct {
	// Resource names what differs: "topic orders", "queue orders-billing",
	// "DLQ orders-billing-dlq", "subscription of orders-billing".
	Resource string
	// Attribute is the attribute that differs ("VisibilityTimeout",
	// "FilterPolicy", ...), or "exists".
	Attribute string
	Want, Got string
}

func (d Drift) String() string {
	return fmt.Sprintf("%s: %s is %s, want %s", d.Resource, d.Attribute, d.Got, d.Want)
}

// Check compares the deployed topic, queues, DLQs, redrive policies, queue
// policies and subscriptions with t and returns every difference, in
// declaration order. It only reads (ListTopics, GetQueueUrl,
// GetQueueAttributes, ListSubscriptionsByTopic, GetSubscriptionAttributes),
// so it is safe against production: `orderctl provision --check`. An error
// is a failure to read, not a difference.
func Check(ctx context.Context, snsc *sns.Client, sqsc *sqs.Client, t Topology) ([]Drift, error) {
	var drift []Drift
	topicARN, err := findTopic(ctx, snsc, t.Topic)
	if errors.Is(err, ErrNotProvisioned) {
		drift = append(drift, Drift{"topic " + t.Topic, "exists", "yes", "missing"})
	} else if err != nil {
		return nil, err
	}
	var subs []snstypes.Subscription
	if topicARN != "" {
		if subs, err = subscriptions(ctx, snsc, topicARN); err != nil {
			return nil, err
		}
	}
	for _, q := range t.Queues {
		d, queueARN, err := checkQueues(ctx, sqsc, t, q, topicARN)
		if err != nil {
			return nil, err
		}
		drift = append(drift, d...)
		if topicARN == "" || queueARN == "" {
			continue
		}
		d, err = checkSubscription(ctx, snsc, q, queueARN, subs)
		if err != nil {
			return nil, err
		}
		drift = append(drift, d...)
	}
	return drift, nil
}

// checkQueues checks a queue and its DLQ; it returns the queue's ARN, or ""
// when the queue is missing.
func checkQueues(ctx context.Context, sqsc *sqs.Client, t Topology, q Queue, topicARN string) ([]Drift, string, error) {
	dlqRes := "DLQ " + t.DLQName(q)
	dlq, found, err := queueAttributes(ctx, sqsc, t.DLQName(q))
	if err != nil {
		return nil, "", err
	}
	var drift []Drift
	if !found {
		drift = append(drift, Drift{dlqRes, "exists", "yes", "missing"})
	} else {
		drift = append(drift, compare(dlqRes, dlq, map[string]string{
			"MessageRetentionPeriod": strconv.Itoa(t.DLQMessageRetentionSeconds),
		})...)
	}
	res := "queue " + q.Name
	attrs, found, err := queueAttributes(ctx, sqsc, q.Name)
	if err != nil {
		return nil, "", err
	}
	if !found {
		return append(drift, Drift{res, "exists", "yes", "missing"}), "", nil
	}
	drift = append(drift, compare(res, attrs, map[string]string{
		"VisibilityTimeout":             strconv.Itoa(q.VisibilityTimeoutSeconds),
		"MessageRetentionPeriod":        strconv.Itoa(t.MessageRetentionSeconds),
		"ReceiveMessageWaitTimeSeconds": strconv.Itoa(t.ReceiveWaitSeconds),
	})...)
	wantRedrive := fmt.Sprintf("deadLetterTargetArn %s, maxReceiveCount %d", dlq["QueueArn"], q.MaxReceiveCount)
	if got := redrive(attrs["RedrivePolicy"]); got != wantRedrive {
		if dlq["QueueArn"] == "" {
			wantRedrive = fmt.Sprintf("deadLetterTargetArn of %s, maxReceiveCount %d", t.DLQName(q), q.MaxReceiveCount)
		}
		drift = append(drift, Drift{res, "RedrivePolicy", wantRedrive, got})
	}
	if topicARN != "" && !allowsTopic(attrs["Policy"], attrs["QueueArn"], topicARN) {
		drift = append(drift, Drift{res, "Policy", "allows sns.amazonaws.com to SendMessage from " + topicARN, describePolicy(attrs["Policy"])})
	}
	return drift, attrs["QueueArn"], nil
}

// checkSubscription checks the topic's one subscription of the queue.
func checkSubscription(ctx context.Context, snsc *sns.Client, q Queue, queueARN string, subs []snstypes.Subscription) ([]Drift, error) {
	res := "subscription of " + q.Name
	var arns []string
	for _, s := range subs {
		if aws.ToString(s.Protocol) == "sqs" && aws.ToString(s.Endpoint) == queueARN {
			arns = append(arns, aws.ToString(s.SubscriptionArn))
		}
	}
	switch {
	case len(arns) == 0:
		return []Drift{{res, "exists", "yes", "missing"}}, nil
	case len(arns) > 1:
		return []Drift{{res, "count", "1", strconv.Itoa(len(arns))}}, nil
	}
	out, err := snsc.GetSubscriptionAttributes(ctx, &sns.GetSubscriptionAttributesInput{SubscriptionArn: aws.String(arns[0])})
	if err != nil {
		return nil, fmt.Errorf("attributes of subscription %s: %w", arns[0], err)
	}
	attrs := out.Attributes
	res += " (" + arns[0] + ")"
	var drift []Drift
	if got := attrs["RawMessageDelivery"]; got != "true" {
		drift = append(drift, Drift{res, "RawMessageDelivery", "true", quoteEmpty(got)})
	}
	if got := attrs["FilterPolicyScope"]; got != "" && got != "MessageAttributes" {
		drift = append(drift, Drift{res, "FilterPolicyScope", "MessageAttributes", got})
	}
	if got := attrs["FilterPolicy"]; !sameJSON(got, q.FilterPolicy()) {
		drift = append(drift, Drift{res, "FilterPolicy", q.FilterPolicy(), quoteEmpty(got)})
	}
	return drift, nil
}

func subscriptions(ctx context.Context, snsc *sns.Client, topicARN string) ([]snstypes.Subscription, error) {
	var out []snstypes.Subscription
	p := sns.NewListSubscriptionsByTopicPaginator(snsc, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list subscriptions of %s: %w", topicARN, err)
		}
		out = append(out, page.Subscriptions...)
	}
	return out, nil
}

// queueAttributes reads all of a queue's attributes; found is false when
// there is no such queue.
func queueAttributes(ctx context.Context, sqsc *sqs.Client, name string) (attrs map[string]string, found bool, err error) {
	url, err := queueURL(ctx, sqsc, name)
	if errors.Is(err, ErrNotProvisioned) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameAll},
	})
	if err != nil {
		return nil, false, fmt.Errorf("attributes of queue %s: %w", name, err)
	}
	return out.Attributes, true, nil
}

// compare reports each wanted attribute that differs.
func compare(res string, got, want map[string]string) []Drift {
	var out []Drift
	for _, name := range []string{"VisibilityTimeout", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds"} {
		w, ok := want[name]
		if ok && got[name] != w {
			out = append(out, Drift{res, name, w, quoteEmpty(got[name])})
		}
	}
	return out
}

// redrive describes a RedrivePolicy attribute; SQS and the emulators write
// maxReceiveCount as a number or a string.
func redrive(policy string) string {
	if policy == "" {
		return `""`
	}
	//nolint:tagliatelle // SQS's RedrivePolicy names
	var p struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(policy), &p); err != nil {
		return strconv.Quote(policy)
	}
	n, err := strconv.Unquote(string(p.MaxReceiveCount))
	if err != nil {
		n = string(p.MaxReceiveCount)
	}
	return fmt.Sprintf("deadLetterTargetArn %s, maxReceiveCount %s", p.DeadLetterTargetArn, n)
}

// allowsTopic reports whether a queue policy lets SNS deliver from the
// topic: an Allow of sqs:SendMessage to sns.amazonaws.com on the queue,
// conditioned on the topic's ARN, as Apply and the CloudFormation template
// write it.
func allowsTopic(policy, queueARN, topicARN string) bool {
	var p struct {
		Statement []map[string]any `json:"Statement"` //nolint:tagliatelle // the IAM policy grammar's name
	}
	if json.Unmarshal([]byte(policy), &p) != nil {
		return false
	}
	for _, s := range p.Statement {
		principal, _ := s["Principal"].(map[string]any)
		cond, _ := s["Condition"].(map[string]any)
		var source any
		for _, op := range []string{"ArnEquals", "ArnLike", "StringEquals"} {
			if m, ok := cond[op].(map[string]any); ok && m["aws:SourceArn"] != nil {
				source = m["aws:SourceArn"]
			}
		}
		if s["Effect"] == "Allow" && oneOf(principal["Service"], "sns.amazonaws.com") &&
			oneOf(s["Action"], "sqs:SendMessage") && oneOf(s["Resource"], queueARN) && oneOf(source, topicARN) {
			return true
		}
	}
	return false
}

// oneOf reports whether v, a string or a list of strings, holds want.
func oneOf(v any, want string) bool {
	switch v := v.(type) {
	case string:
		return v == want
	case []any:
		for _, x := range v {
			if x == want {
				return true
			}
		}
	}
	return false
}

func describePolicy(policy string) string {
	if policy == "" {
		return "no policy"
	}
	return "a policy that does not"
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}
