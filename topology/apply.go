package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Applied is the topology as it exists: the names resolved to ARNs and URLs.
//
//nolint:tagliatelle // what `orderctl provision` has always printed; snake_case would change its output
type Applied struct {
	TopicARN string                  `json:"TopicARN"`
	Queues   map[string]AppliedQueue `json:"Queues"` // by handler
}

// AppliedQueue is one queue and its DLQ.
//
//nolint:tagliatelle // what `orderctl provision` has always printed; snake_case would change its output
type AppliedQueue struct {
	Queue

	URL    string `json:"URL"`
	ARN    string `json:"ARN"`
	DLQURL string `json:"DLQURL"`
	DLQARN string `json:"DLQARN"`
}

// Apply creates or converges the topology: it is safe to run again and again,
// and a second run corrects attributes changed by hand. It returns what it
// applied.
func Apply(ctx context.Context, snsc *sns.Client, sqsc *sqs.Client, t Topology) (Applied, error) {
	topic, err := snsc.CreateTopic(ctx, &sns.CreateTopicInput{Name: aws.String(t.Topic)})
	if err != nil {
		return Applied{}, fmt.Errorf("create topic %s: %w", t.Topic, err)
	}
	ap := Applied{TopicARN: aws.ToString(topic.TopicArn), Queues: map[string]AppliedQueue{}}
	for _, q := range t.Queues {
		aq, err := applyQueue(ctx, sqsc, t, q, ap.TopicARN)
		if err != nil {
			return Applied{}, err
		}
		if err := subscribe(ctx, snsc, ap.TopicARN, aq); err != nil {
			return Applied{}, err
		}
		ap.Queues[q.Handler] = aq
	}
	return ap, nil
}

func applyQueue(ctx context.Context, sqsc *sqs.Client, t Topology, q Queue, topicARN string) (AppliedQueue, error) {
	aq := AppliedQueue{Queue: q}
	var err error
	aq.DLQURL, aq.DLQARN, err = ensureQueue(ctx, sqsc, t.DLQName(q), map[string]string{
		string(sqstypes.QueueAttributeNameMessageRetentionPeriod): strconv.Itoa(t.DLQMessageRetentionSeconds),
	})
	if err != nil {
		return aq, err
	}
	redrive, err := json.Marshal(map[string]string{
		"deadLetterTargetArn": aq.DLQARN,
		"maxReceiveCount":     strconv.Itoa(q.MaxReceiveCount),
	})
	if err != nil {
		return aq, fmt.Errorf("encode the redrive policy of %s: %w", q.Name, err)
	}
	aq.URL, aq.ARN, err = ensureQueue(ctx, sqsc, q.Name, map[string]string{
		string(sqstypes.QueueAttributeNameVisibilityTimeout):             strconv.Itoa(q.VisibilityTimeoutSeconds),
		string(sqstypes.QueueAttributeNameMessageRetentionPeriod):        strconv.Itoa(t.MessageRetentionSeconds),
		string(sqstypes.QueueAttributeNameReceiveMessageWaitTimeSeconds): strconv.Itoa(t.ReceiveWaitSeconds),
		string(sqstypes.QueueAttributeNameRedrivePolicy):                 string(redrive),
	})
	if err != nil {
		return aq, err
	}
	// In AWS, SNS may deliver to the queue only when the queue's policy allows
	// it; emulators ignore the policy.
	policy, err := json.Marshal(map[string]any{
		"Version": "2012-10-17",
		"Statement": []map[string]any{{
			"Sid":       "AllowTopic",
			"Effect":    "Allow",
			"Principal": map[string]string{"Service": "sns.amazonaws.com"},
			"Action":    "sqs:SendMessage",
			"Resource":  aq.ARN,
			"Condition": map[string]any{"ArnEquals": map[string]string{"aws:SourceArn": topicARN}},
		}},
	})
	if err != nil {
		return aq, fmt.Errorf("encode the policy of queue %s: %w", q.Name, err)
	}
	if _, err := sqsc.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{
		QueueUrl:   aws.String(aq.URL),
		Attributes: map[string]string{string(sqstypes.QueueAttributeNamePolicy): string(policy)},
	}); err != nil {
		return aq, fmt.Errorf("set policy of queue %s: %w", q.Name, err)
	}
	return aq, nil
}

// ensureQueue creates the queue if needed and then sets its attributes, so
// that an existing queue with other attributes converges instead of failing.
func ensureQueue(ctx context.Context, sqsc *sqs.Client, name string, attrs map[string]string) (url, arn string, err error) {
	out, err := sqsc.CreateQueue(ctx, &sqs.CreateQueueInput{QueueName: aws.String(name)})
	if err != nil {
		return "", "", fmt.Errorf("create queue %s: %w", name, err)
	}
	url = aws.ToString(out.QueueUrl)
	if _, err := sqsc.SetQueueAttributes(ctx, &sqs.SetQueueAttributesInput{QueueUrl: aws.String(url), Attributes: attrs}); err != nil {
		return "", "", fmt.Errorf("set attributes of queue %s: %w", name, err)
	}
	arn, err = queueARN(ctx, sqsc, url)
	if err != nil {
		return "", "", err
	}
	return url, arn, nil
}

func queueARN(ctx context.Context, sqsc *sqs.Client, url string) (string, error) {
	attrs, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl:       aws.String(url),
		AttributeNames: []sqstypes.QueueAttributeName{sqstypes.QueueAttributeNameQueueArn},
	})
	if err != nil {
		return "", fmt.Errorf("get ARN of queue %s: %w", url, err)
	}
	return attrs.Attributes[string(sqstypes.QueueAttributeNameQueueArn)], nil
}

// subscribe subscribes the queue to the topic with raw delivery and its filter
// policy, or converges an existing subscription's attributes.
func subscribe(ctx context.Context, snsc *sns.Client, topicARN string, q AppliedQueue) error {
	want := map[string]string{
		"RawMessageDelivery": "true",
		"FilterPolicyScope":  "MessageAttributes",
		"FilterPolicy":       q.FilterPolicy(),
	}
	subARN, err := findSubscription(ctx, snsc, topicARN, q.ARN)
	if err != nil {
		return err
	}
	if subARN == "" {
		_, err := snsc.Subscribe(ctx, &sns.SubscribeInput{
			TopicArn: aws.String(topicARN), Protocol: aws.String("sqs"), Endpoint: aws.String(q.ARN),
			Attributes: want, ReturnSubscriptionArn: true,
		})
		if err != nil {
			return fmt.Errorf("subscribe %s to %s: %w", q.Name, topicARN, err)
		}
		return nil
	}
	for _, name := range []string{"RawMessageDelivery", "FilterPolicyScope", "FilterPolicy"} {
		if _, err := snsc.SetSubscriptionAttributes(ctx, &sns.SetSubscriptionAttributesInput{
			SubscriptionArn: aws.String(subARN), AttributeName: aws.String(name), AttributeValue: aws.String(want[name]),
		}); err != nil {
			return fmt.Errorf("set %s of subscription %s: %w", name, subARN, err)
		}
	}
	return nil
}

func findSubscription(ctx context.Context, snsc *sns.Client, topicARN, endpoint string) (string, error) {
	p := sns.NewListSubscriptionsByTopicPaginator(snsc, &sns.ListSubscriptionsByTopicInput{TopicArn: aws.String(topicARN)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list subscriptions of %s: %w", topicARN, err)
		}
		for _, s := range page.Subscriptions {
			if aws.ToString(s.Protocol) == "sqs" && aws.ToString(s.Endpoint) == endpoint {
				return aws.ToString(s.SubscriptionArn), nil
			}
		}
	}
	return "", nil
}

// Resolve finds an existing topology without changing it: what the worker and
// the operator commands need, with read-only permissions. Each queue's
// visibility timeout is the deployed queue's, which the worker asks for on
// every receive and extends by while a handler runs.
func Resolve(ctx context.Context, snsc *sns.Client, sqsc *sqs.Client, t Topology) (Applied, error) {
	ap := Applied{Queues: map[string]AppliedQueue{}}
	arn, err := findTopic(ctx, snsc, t.Topic)
	if err != nil {
		return ap, err
	}
	ap.TopicARN = arn
	for _, q := range t.Queues {
		aq := AppliedQueue{Queue: q}
		if aq.URL, err = queueURL(ctx, sqsc, q.Name); err != nil {
			return ap, err
		}
		if aq.VisibilityTimeoutSeconds, err = visibilityTimeout(ctx, sqsc, aq.URL); err != nil {
			return ap, err
		}
		if aq.DLQURL, err = queueURL(ctx, sqsc, t.DLQName(q)); err != nil {
			return ap, err
		}
		ap.Queues[q.Handler] = aq
	}
	return ap, nil
}

// ErrNotProvisioned says the topology has not been applied yet.
var ErrNotProvisioned = errors.New("topology not provisioned (run `orderctl provision`)")

func findTopic(ctx context.Context, snsc *sns.Client, name string) (string, error) {
	p := sns.NewListTopicsPaginator(snsc, &sns.ListTopicsInput{})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return "", fmt.Errorf("list topics: %w", err)
		}
		for _, tp := range page.Topics {
			if strings.HasSuffix(aws.ToString(tp.TopicArn), ":"+name) {
				return aws.ToString(tp.TopicArn), nil
			}
		}
	}
	return "", fmt.Errorf("topic %s: %w", name, ErrNotProvisioned)
}

func queueURL(ctx context.Context, sqsc *sqs.Client, name string) (string, error) {
	out, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
	if err != nil {
		if _, ok := errors.AsType[*sqstypes.QueueDoesNotExist](err); ok {
			return "", fmt.Errorf("queue %s: %w", name, ErrNotProvisioned)
		}
		return "", fmt.Errorf("get URL of queue %s: %w", name, err)
	}
	return aws.ToString(out.QueueUrl), nil
}

// visibilityTimeout reads a queue's visibility timeout in seconds.
func visibilityTimeout(ctx context.Context, sqsc *sqs.Client, url string) (int, error) {
	name := sqstypes.QueueAttributeNameVisibilityTimeout
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: []sqstypes.QueueAttributeName{name}})
	if err != nil {
		return 0, fmt.Errorf("visibility timeout of %s: %w", url, err)
	}
	v, err := strconv.Atoi(out.Attributes[string(name)])
	if err != nil || v < 1 {
		return 0, fmt.Errorf("visibility timeout of %s: %q is not a whole number of seconds", url, out.Attributes[string(name)])
	}
	return v, nil
}

// Depth is how many messages a queue holds: visible, in flight and delayed.
func Depth(ctx context.Context, sqsc *sqs.Client, url string) (int64, error) {
	names := []sqstypes.QueueAttributeName{
		sqstypes.QueueAttributeNameApproximateNumberOfMessages,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	out, err := sqsc.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(url), AttributeNames: names})
	if err != nil {
		return 0, fmt.Errorf("depth of %s: %w", url, err)
	}
	var total int64
	for _, n := range names {
		v, _ := strconv.ParseInt(out.Attributes[string(n)], 10, 64)
		total += v
	}
	return total, nil
}
