package topology

import "testing"

// TestAllowsTopic: the queue policy Check accepts is the one Apply and the
// CloudFormation template write, in either of IAM's shapes (a string or a
// list), and nothing looser or tighter.
func TestAllowsTopic(t *testing.T) {
	const (
		queue = "arn:aws:sqs:eu-west-1:123456789012:orders-billing"
		topic = "arn:aws:sns:eu-west-1:123456789012:orders"
	)
	tests := []struct {
		name, policy string
		want         bool
	}{
		{"as Apply writes it", `{"Version":"2012-10-17","Statement":[{"Sid":"AllowTopic","Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"` + queue + `","Condition":{"ArnEquals":{"aws:SourceArn":"` + topic + `"}}}]}`, true},
		{"as the template writes it: one policy, three queues", `{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage","Resource":["arn:aws:sqs:eu-west-1:123456789012:orders-inventory","` + queue + `"],"Condition":{"ArnEquals":{"aws:SourceArn":"` + topic + `"}}}]}`, true},
		{"another topic", `{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"` + queue + `","Condition":{"ArnEquals":{"aws:SourceArn":"arn:aws:sns:eu-west-1:123456789012:other"}}}]}`, false},
		{"another queue", `{"Statement":[{"Effect":"Allow","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"arn:aws:sqs:eu-west-1:123456789012:other","Condition":{"ArnEquals":{"aws:SourceArn":"` + topic + `"}}}]}`, false},
		{"a deny", `{"Statement":[{"Effect":"Deny","Principal":{"Service":"sns.amazonaws.com"},"Action":"sqs:SendMessage","Resource":"` + queue + `","Condition":{"ArnEquals":{"aws:SourceArn":"` + topic + `"}}}]}`, false},
		{"no policy", ``, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := allowsTopic(tt.policy, queue, topic); got != tt.want {
				t.Errorf("allowsTopic = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestRedriveReadsBothShapes: SQS writes maxReceiveCount as a number,
// emulators sometimes as a string; both mean the same redrive.
func TestRedriveReadsBothShapes(t *testing.T) {
	const want = "deadLetterTargetArn arn:aws:sqs:eu-west-1:123456789012:orders-billing-dlq, maxReceiveCount 10"
	for _, p := range []string{
		`{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:orders-billing-dlq","maxReceiveCount":10}`,
		`{"deadLetterTargetArn":"arn:aws:sqs:eu-west-1:123456789012:orders-billing-dlq","maxReceiveCount":"10"}`,
	} {
		if got := redrive(p); got != want {
			t.Errorf("redrive(%s) = %q, want %q", p, got, want)
		}
	}
	if got := redrive(""); got != `""` {
		t.Errorf("redrive of no policy = %q", got)
	}
}

// TestFilterPoliciesCompareAsJSON: the same policy with other spacing or
// key order is no drift; another list of event types is.
func TestFilterPoliciesCompareAsJSON(t *testing.T) {
	q := Queue{EventTypes: []string{"order.placed", "order.cancelled"}}
	if !sameJSON(`{ "event_type" : [ "order.placed", "order.cancelled" ] }`, q.FilterPolicy()) {
		t.Error("the same filter policy, spaced differently, is reported as drift")
	}
	if sameJSON(`{"event_type":["order.placed"]}`, q.FilterPolicy()) || sameJSON(``, q.FilterPolicy()) {
		t.Error("a different or missing filter policy is not reported")
	}
}
