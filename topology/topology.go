// Package topology holds the SNS/SQS topology the code runs with
// (topology.json, rendered from deploy/cloudformation/pipeline.yaml, the one
// declaration) and applies and checks it: `orderctl provision` and the test
// harness call Apply, `orderctl provision --check` calls Check, the worker
// calls Resolve; the LocalStack init hook reads the same file.
package topology

import (
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
)

//go:embed topology.json
var declaration []byte

// Topology is the declared topic and its subscribed queues.
type Topology struct {
	Topic                      string  `json:"topic"`
	Queues                     []Queue `json:"queues"`
	DLQSuffix                  string  `json:"dlq_suffix"`
	MessageRetentionSeconds    int     `json:"message_retention_seconds"`
	DLQMessageRetentionSeconds int     `json:"dlq_message_retention_seconds"`
	ReceiveWaitSeconds         int     `json:"receive_wait_seconds"`
}

// Queue is one subscribed queue, owned by one handler.
type Queue struct {
	Name                     string   `json:"name"`
	Handler                  string   `json:"handler"`
	EventTypes               []string `json:"event_types"`
	VisibilityTimeoutSeconds int      `json:"visibility_timeout_seconds"`
	MaxReceiveCount          int      `json:"max_receive_count"`
}

// DLQName is the name of the queue's dead-letter queue.
func (t Topology) DLQName(q Queue) string { return q.Name + t.DLQSuffix }

// Default returns the declared topology.
func Default() Topology {
	var t Topology
	if err := json.Unmarshal(declaration, &t); err != nil {
		panic(fmt.Sprintf("topology.json: %v", err)) // embedded at build time: a programmer error
	}
	if err := t.Validate(); err != nil {
		panic(fmt.Sprintf("topology.json: %v", err))
	}
	return t
}

// Validate checks the declaration.
func (t Topology) Validate() error {
	if t.Topic == "" || t.DLQSuffix == "" {
		return errors.New("topology: topic and dlq_suffix are required")
	}
	seen := map[string]bool{}
	for _, q := range t.Queues {
		if q.Name == "" || q.Handler == "" || len(q.EventTypes) == 0 {
			return fmt.Errorf("topology: queue %q needs name, handler and event_types", q.Name)
		}
		if seen[q.Handler] {
			return fmt.Errorf("topology: handler %q has two queues", q.Handler)
		}
		seen[q.Handler] = true
		if q.MaxReceiveCount < 1 || q.VisibilityTimeoutSeconds < 1 {
			return fmt.Errorf("topology: queue %q needs max_receive_count and visibility_timeout_seconds >= 1", q.Name)
		}
	}
	return nil
}

// WithPrefix returns the topology with every topic and queue name prefixed,
// so that tests (or several environments in one account) stay apart.
func (t Topology) WithPrefix(prefix string) Topology {
	if prefix == "" {
		return t
	}
	t.Topic = prefix + t.Topic
	t.Queues = slices.Clone(t.Queues)
	for i := range t.Queues {
		t.Queues[i].Name = prefix + t.Queues[i].Name
	}
	return t
}

// Queue returns the queue of a handler.
func (t Topology) Queue(handler string) (Queue, bool) {
	for _, q := range t.Queues {
		if q.Handler == handler {
			return q, true
		}
	}
	return Queue{}, false
}

// Handlers lists the handlers in declaration order.
func (t Topology) Handlers() []string {
	hs := make([]string, len(t.Queues))
	for i, q := range t.Queues {
		hs[i] = q.Handler
	}
	return hs
}

// FilterPolicy is the subscription filter policy of a queue: only the event
// types its handler acts on reach it.
func (q Queue) FilterPolicy() string {
	b, _ := json.Marshal(map[string][]string{"event_type": q.EventTypes}) //nolint:errchkjson // a map of string slices always encodes
	return string(b)
}
