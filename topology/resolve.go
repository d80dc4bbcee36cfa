package topology

import (
	"context"
	"fmt"

	"github.com/aws/aws-sdk-go-v2/service/sns"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// ResolveQueue finds one handler's queue and its DLQ, and the queue's
// visibility timeout: what a function that serves one handler needs, with
// permissions on its own queues alone (no other queue, no topic).
func ResolveQueue(ctx context.Context, sqsc *sqs.Client, t Topology, handler string) (AppliedQueue, error) {
	q, ok := t.Queue(handler)
	if !ok {
		return AppliedQueue{}, fmt.Errorf("topology has no queue for handler %q", handler)
	}
	aq := AppliedQueue{Queue: q}
	var err error
	if aq.URL, err = queueURL(ctx, sqsc, q.Name); err != nil {
		return aq, err
	}
	if aq.VisibilityTimeoutSeconds, err = visibilityTimeout(ctx, sqsc, aq.URL); err != nil {
		return aq, err
	}
	if aq.DLQURL, err = queueURL(ctx, sqsc, t.DLQName(q)); err != nil {
		return aq, err
	}
	return aq, nil
}

// ResolveTopic finds the topic's ARN by its name (sns:ListTopics).
func ResolveTopic(ctx context.Context, snsc *sns.Client, t Topology) (string, error) {
	return findTopic(ctx, snsc, t.Topic)
}
