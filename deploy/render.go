package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode"

	"github.com/orderpipe/orderpipe/topology"
)

//go:generate go run ./internal/render

// Rendered files, by path from the repository's root. Each is generated
// from the templates; TestRenderedFilesAreUpToDate fails when one differs.
const (
	TaskDefinitionFile  = "deploy/ecs/task-definition.json"
	TaskPolicyFile      = "deploy/ecs/iam-policy.json"
	ExecutionPolicyFile = "deploy/ecs/execution-role-policy.json"
	TopologyFile        = "topology/topology.json"
)

// The resources the rendered files come from, in pipeline.yaml.
const (
	WorkerTaskDefinition  = "WorkerTaskDefinition"
	MigrateTaskDefinition = "MigrateTaskDefinition"
	WorkerContainer       = "worker"
	TaskRole              = "TaskRole"
	ExecutionRole         = "ExecutionRole"
)

// RenderFiles renders every generated file from the templates.
func RenderFiles() (map[string][]byte, error) {
	d, err := RenderSample()
	if err != nil {
		return nil, err
	}
	p, err := d.Pipeline()
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	td, err := p.Properties(WorkerTaskDefinition)
	if err != nil {
		return nil, err
	}
	if files[TaskDefinitionFile], err = indentJSON(ecsJSON(td, "")); err != nil {
		return nil, err
	}
	for file, role := range map[string]string{TaskPolicyFile: TaskRole, ExecutionPolicyFile: ExecutionRole} {
		doc, err := p.RolePolicy(role)
		if err != nil {
			return nil, err
		}
		if files[file], err = indentJSON(doc); err != nil {
			return nil, err
		}
	}
	top, err := RenderTopology()
	if err != nil {
		return nil, err
	}
	files[TopologyFile], err = topologyJSON(top)
	return files, err
}

// RolePolicy returns the one inline policy document of an IAM role.
func (st *Stack) RolePolicy(role string) (*Map, error) {
	p, err := st.Properties(role)
	if err != nil {
		return nil, err
	}
	pols := p.List("Policies")
	if len(pols) != 1 {
		return nil, fmt.Errorf("%s: role %s has %d inline policies, want one", st.T.Name, role, len(pols))
	}
	pol, ok := pols[0].(*Map)
	if !ok {
		return nil, fmt.Errorf("%s: role %s: the inline policy is not a mapping", st.T.Name, role)
	}
	doc := pol.Map("PolicyDocument")
	if doc == nil {
		return nil, fmt.Errorf("%s: role %s: no PolicyDocument", st.T.Name, role)
	}
	return doc, nil
}

// ecsJSON turns CloudFormation's PascalCase task definition properties into
// ECS's own JSON (camelCase, what register-task-definition reads). The keys
// of free-form maps (log driver options, Docker labels) are data and stay.
func ecsJSON(v any, parent string) any {
	switch v := v.(type) {
	case *Map:
		out := NewMap()
		for _, k := range v.Keys() {
			if parent == "" && k == "Tags" {
				continue
			}
			key := k
			if parent != "Options" && parent != "DockerLabels" {
				key = lowerFirst(k)
			}
			out.Set(key, ecsJSON(v.Get(k), k))
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = ecsJSON(x, parent)
		}
		return out
	}
	return v
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	r := []rune(s)
	r[0] = unicode.ToLower(r[0])
	return string(r)
}

func indentJSON(v any) ([]byte, error) {
	b, err := marshal(v)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return nil, fmt.Errorf("indent JSON: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// RenderTopology reads the topology the pipeline template declares, with
// no name prefix: the topic, and per subscription (in template order) the
// queue it delivers to, that queue's DLQ, redrive and filter policy. Every
// queue must share the retention, wait and DLQ suffix topology.json holds
// once.
func RenderTopology() (topology.Topology, error) {
	params := SampleParameters()
	params["NamePrefix"] = ""
	d, err := Render(params)
	if err != nil {
		return topology.Topology{}, err
	}
	p, err := d.Pipeline()
	if err != nil {
		return topology.Topology{}, err
	}
	return p.topology()
}

func (st *Stack) topology() (topology.Topology, error) {
	var t topology.Topology
	subs := st.T.ResourcesOfType("AWS::SNS::Subscription")
	if len(subs) == 0 {
		return topology.Topology{}, st.errorf("no subscriptions")
	}
	for _, s := range subs {
		if err := st.addSubscription(&t, s); err != nil {
			return topology.Topology{}, err
		}
	}
	return t, t.Validate()
}

// errorf is an error about the stack's template.
func (st *Stack) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{st.T.Name}, args...)...)
}

// addSubscription adds to t the queue that subscription s delivers to, and
// checks that it agrees with the other subscriptions on what topology.json
// holds once: the topic and the queue settings.
func (st *Stack) addSubscription(t *topology.Topology, s Resource) error {
	topicRef, queueRes, ok := subscriptionTargets(s)
	if !ok {
		return st.errorf("subscription %s: TopicArn must be !Ref TOPIC and Endpoint !GetAtt QUEUE.Arn", s.Logical)
	}
	sp, err := st.Properties(s.Logical)
	if err != nil {
		return err
	}
	if sp.String("Protocol") != "sqs" || sp.Get("RawMessageDelivery") != true || sp.String("FilterPolicyScope") != "MessageAttributes" {
		return st.errorf("subscription %s: want protocol sqs, RawMessageDelivery true, FilterPolicyScope MessageAttributes", s.Logical)
	}
	topic, err := st.Properties(topicRef)
	if err != nil {
		return err
	}
	if t.Topic == "" {
		t.Topic = topic.String("TopicName")
	} else if t.Topic != topic.String("TopicName") {
		return st.errorf("subscriptions to two topics")
	}
	q, dlq, err := st.queuePair(queueRes)
	if err != nil {
		return err
	}
	types, err := eventTypes(sp.Map("FilterPolicy"))
	if err != nil {
		return st.errorf("subscription %s: %w", s.Logical, err)
	}
	handler := tag(q, "orderpipe:handler")
	if handler == "" {
		return st.errorf("queue %s has no orderpipe:handler tag", queueRes)
	}
	name := q.String("QueueName")
	if err := st.sharedQueueSettings(t, name, q, dlq); err != nil {
		return err
	}
	vis, err1 := intOf(q.Get("VisibilityTimeout"))
	maxRC, err2 := intOf(q.Map("RedrivePolicy").Get("maxReceiveCount"))
	if err1 != nil || err2 != nil {
		return st.errorf("queue %s: VisibilityTimeout and RedrivePolicy.maxReceiveCount must be numbers", name)
	}
	t.Queues = append(t.Queues, topology.Queue{Name: name, Handler: handler, EventTypes: types, VisibilityTimeoutSeconds: vis, MaxReceiveCount: maxRC})
	return nil
}

// sharedQueueSettings sets in t what topology.json holds once for every
// queue (retention, long-poll wait, DLQ suffix) from queue name (q, with
// its dlq), or refuses a queue that differs from the ones before it.
func (st *Stack) sharedQueueSettings(t *topology.Topology, name string, q, dlq *Map) error {
	suffix, ok := strings.CutPrefix(dlq.String("QueueName"), name)
	if !ok || suffix == "" {
		return st.errorf("DLQ %s is not named after queue %s", dlq.String("QueueName"), name)
	}
	shared := []struct {
		field *int
		got   any
		what  string
	}{
		{&t.MessageRetentionSeconds, q.Get("MessageRetentionPeriod"), "MessageRetentionPeriod"},
		{&t.DLQMessageRetentionSeconds, dlq.Get("MessageRetentionPeriod"), "the DLQ's MessageRetentionPeriod"},
		{&t.ReceiveWaitSeconds, q.Get("ReceiveMessageWaitTimeSeconds"), "ReceiveMessageWaitTimeSeconds"},
	}
	for _, f := range shared {
		n, err := intOf(f.got)
		if err != nil || (*f.field != 0 && *f.field != n) {
			return st.errorf("queue %s: %s %v differs from the other queues' (topology.json holds one)", name, f.what, f.got)
		}
		*f.field = n
	}
	if t.DLQSuffix != "" && t.DLQSuffix != suffix {
		return st.errorf("queue %s: DLQ suffix %q differs from the other queues'", name, suffix)
	}
	t.DLQSuffix = suffix
	return nil
}

// queuePair returns a queue's properties and its DLQ's: the queue its
// RedrivePolicy names with !GetAtt DLQ.Arn.
func (st *Stack) queuePair(logical string) (q, dlq *Map, err error) {
	r, ok := st.T.Resource(logical)
	if !ok || r.Type != "AWS::SQS::Queue" {
		return q, dlq, fmt.Errorf("%s: %s is not a queue", st.T.Name, logical)
	}
	target, ok := getAttTarget(r.Properties.Map("RedrivePolicy").Get("deadLetterTargetArn"), "Arn")
	if !ok {
		return q, dlq, fmt.Errorf("%s: queue %s: RedrivePolicy.deadLetterTargetArn must be !GetAtt DLQ.Arn", st.T.Name, logical)
	}
	qp, err := st.Properties(logical)
	if err != nil {
		return q, dlq, err
	}
	dp, err := st.Properties(target)
	if err != nil {
		return q, dlq, err
	}
	return qp, dp, nil
}

// subscriptionTargets reads a subscription's !Ref TOPIC and !GetAtt QUEUE.Arn.
func subscriptionTargets(s Resource) (topic, queue string, ok bool) {
	ref, arg, _ := s.Properties.Map("TopicArn").Intrinsic()
	topic, _ = arg.(string)
	queue, ok = getAttTarget(s.Properties.Get("Endpoint"), "Arn")
	return topic, queue, ok && ref == "Ref" && topic != ""
}

// getAttTarget returns RES when v is {"Fn::GetAtt": [RES, attr]}.
func getAttTarget(v any, attr string) (string, bool) {
	m, _ := v.(*Map)
	fn, arg, _ := m.Intrinsic()
	l, _ := arg.([]any)
	if fn != "Fn::GetAtt" || len(l) != 2 || l[1] != attr {
		return "", false
	}
	res, ok := l[0].(string)
	return res, ok
}

func eventTypes(fp *Map) ([]string, error) {
	if fp.Len() != 1 || !fp.Has("event_type") {
		return nil, fmt.Errorf("FilterPolicy must filter on event_type alone, got %v", fp.Keys())
	}
	var out []string
	for _, v := range fp.List("event_type") {
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("event_type %v is not a string", v)
		}
		out = append(out, s)
	}
	return out, nil
}

func tag(props *Map, key string) string {
	for _, t := range props.List("Tags") {
		if m, _ := t.(*Map); m.String("Key") == key {
			return m.String("Value")
		}
	}
	return ""
}

func intOf(v any) (int, error) {
	switch v := v.(type) {
	case int64:
		return int(v), nil
	case string:
		var n int
		if _, err := fmt.Sscanf(v, "%d", &n); err != nil {
			return 0, fmt.Errorf("%q is not a number: %w", v, err)
		}
		return n, nil
	}
	return 0, fmt.Errorf("%v is not a number", v)
}

// topologyJSON writes topology.json as the code reads it (the struct's
// field order), with a comment saying where it comes from.
func topologyJSON(t topology.Topology) ([]byte, error) {
	body, err := marshal(t)
	if err != nil {
		return nil, err
	}
	comment, _ := marshal("Generated from deploy/cloudformation/pipeline.yaml by `go generate ./deploy`: edit the template, not this file. " +
		"The topology the code applies: `orderctl provision` (topology.Apply) and its --check (topology.Check), the worker (topology.Resolve) " +
		"and the LocalStack init hook (localstack/init/ready.d/10-topology.py). Names may get a prefix at apply time, for isolated test topologies.")
	doc := append(append(append([]byte(`{"_comment":`), comment...), ','), body[1:]...)
	var out bytes.Buffer
	if err := json.Indent(&out, doc, "", "  "); err != nil {
		return nil, fmt.Errorf("indent topology.json: %w", err)
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}
