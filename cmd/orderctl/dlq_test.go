package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// dlqStack is one test's topology, with nothing consuming its queues.
type dlqStack struct {
	client *sqs.Client
	ap     topology.Applied
}

func newDLQStack(t *testing.T) *dlqStack {
	t.Helper()
	env := testenv.Open(t, "orderctl")
	_, ap := env.Topology(t)
	return &dlqStack{client: sqs.NewFromConfig(env.AWS), ap: ap}
}

// orderctl runs `orderctl dlq args...` in-process, as main would, and
// returns what it printed.
func (s *dlqStack) orderctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	o, err := parseDLQ(args)
	if err != nil {
		t.Fatalf("orderctl dlq %s: %v", strings.Join(args, " "), err)
	}
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = runDLQ(ctx, s.client, s.ap, &out, o)
	return out.String(), err
}

func str(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

// deadLetter puts a message into handler's DLQ as the worker leaves one,
// and returns its id.
func (s *dlqStack) deadLetter(t *testing.T, handler, body, reason string) string {
	t.Helper()
	q := s.ap.Queues[handler]
	return s.send(t, q.DLQURL, body, map[string]sqstypes.MessageAttributeValue{
		"event_type":               str("order.placed"),
		worker.AttrDLQReason:       str(reason),
		worker.AttrDLQError:        str("invalid event: " + reason),
		worker.AttrDLQSourceQueue:  str(q.URL),
		worker.AttrDLQReceiveCount: str("1"),
	})
}

func (s *dlqStack) send(t *testing.T, url, body string, attrs map[string]sqstypes.MessageAttributeValue) string {
	t.Helper()
	out, err := s.client.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String(url), MessageBody: aws.String(body), MessageAttributes: attrs})
	if err != nil {
		t.Fatalf("send to %s: %v", url, err)
	}
	return aws.ToString(out.MessageId)
}

// drain receives and deletes every message of url (bounded wait) and
// returns body → attributes.
func (s *dlqStack) drain(t *testing.T, url string) map[string]map[string]string {
	t.Helper()
	ctx := context.Background()
	got := map[string]map[string]string{}
	testenv.Eventually(t, 20*time.Second, func() error {
		out, err := s.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
			QueueUrl: aws.String(url), MaxNumberOfMessages: 10, WaitTimeSeconds: 1, VisibilityTimeout: 1, MessageAttributeNames: []string{"All"},
		})
		if err != nil {
			return err
		}
		for _, m := range out.Messages {
			attrs := map[string]string{}
			for k, v := range m.MessageAttributes {
				attrs[k] = aws.ToString(v.StringValue)
			}
			got[aws.ToString(m.Body)] = attrs
			if _, err := s.client.DeleteMessage(ctx, &sqs.DeleteMessageInput{QueueUrl: aws.String(url), ReceiptHandle: m.ReceiptHandle}); err != nil {
				return err
			}
		}
		n, err := topology.Depth(ctx, s.client, url)
		if err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%s still holds %d messages", url, n)
		}
		return nil
	})
	return got
}

func bodies(m map[string]map[string]string) []string { return slices.Sorted(maps.Keys(m)) }

// TestDLQRedriveByIDMovesOnlyThatOne: `orderctl dlq redrive --id` sends
// back that message, with its own attributes and without the
// orderpipe_dlq_* ones, and leaves every other dead letter where it is.
func TestDLQRedriveByIDMovesOnlyThatOne(t *testing.T) {
	t.Parallel()
	s := newDLQStack(t)
	s.deadLetter(t, "billing", `{"n":1}`, "unknown_sku")
	id := s.deadLetter(t, "billing", `{"n":2}`, "unknown_sku")
	s.deadLetter(t, "billing", `{"n":3}`, "invalid_field")
	s.deadLetter(t, "inventory", `{"n":4}`, "unknown_sku")

	out, err := s.orderctl(t, "redrive", "--id", id)
	if err != nil {
		t.Fatalf("redrive --id: %v\n%s", err, out)
	}
	if !strings.Contains(out, "billing") || !strings.Contains(out, id) || !strings.Contains(out, "unknown_sku") ||
		!strings.Contains(out, "1 messages back in their queues") {
		t.Errorf("redrive --id printed:\n%s\nwant the handler, the message id, its reason and a total of 1", out)
	}
	want := map[string]map[string]string{`{"n":2}`: {"event_type": "order.placed"}}
	if d := cmp.Diff(want, s.drain(t, s.ap.Queues["billing"].URL)); d != "" {
		t.Errorf("billing queue after redrive --id (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{`{"n":1}`, `{"n":3}`}, bodies(s.drain(t, s.ap.Queues["billing"].DLQURL))); d != "" {
		t.Errorf("billing DLQ after redrive --id (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{`{"n":4}`}, bodies(s.drain(t, s.ap.Queues["inventory"].DLQURL))); d != "" {
		t.Errorf("inventory DLQ after redrive --id (-want +got):\n%s", d)
	}
	if got := bodies(s.drain(t, s.ap.Queues["inventory"].URL)); len(got) != 0 {
		t.Errorf("inventory queue after redrive --id holds %v, want nothing", got)
	}
}

// TestDLQRedriveAllAndByReason: --reason moves only that reason's dead
// letters, --all the rest, from every DLQ; each is printed, then a total.
func TestDLQRedriveAllAndByReason(t *testing.T) {
	t.Parallel()
	s := newDLQStack(t)
	ids := []string{
		s.deadLetter(t, "billing", `{"n":1}`, "unknown_sku"),
		s.deadLetter(t, "billing", `{"n":2}`, "invalid_field"),
		s.deadLetter(t, "inventory", `{"n":3}`, "invalid_field"),
		s.deadLetter(t, "notification", `{"n":4}`, "unknown_sku"),
	}

	out, err := s.orderctl(t, "redrive", "--reason", "unknown_sku")
	if err != nil {
		t.Fatalf("redrive --reason: %v\n%s", err, out)
	}
	if !strings.Contains(out, ids[0]) || !strings.Contains(out, ids[3]) || strings.Contains(out, ids[1]) || strings.Contains(out, ids[2]) ||
		!strings.Contains(out, "2 messages back in their queues") {
		t.Errorf("redrive --reason unknown_sku printed:\n%s\nwant %s and %s, and a total of 2", out, ids[0], ids[3])
	}

	out, err = s.orderctl(t, "redrive", "--all")
	if err != nil {
		t.Fatalf("redrive --all: %v\n%s", err, out)
	}
	if !strings.Contains(out, ids[1]) || !strings.Contains(out, ids[2]) || !strings.Contains(out, "2 messages back in their queues") {
		t.Errorf("redrive --all printed:\n%s\nwant %s and %s, and a total of 2", out, ids[1], ids[2])
	}
	for _, tt := range []struct {
		name    string
		handler string
		want    []string
	}{
		{"billing", "billing", []string{`{"n":1}`, `{"n":2}`}},
		{"inventory", "inventory", []string{`{"n":3}`}},
		{"notification", "notification", []string{`{"n":4}`}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := s.drain(t, s.ap.Queues[tt.handler].URL)
			if d := cmp.Diff(tt.want, bodies(got)); d != "" {
				t.Errorf("%s queue after the redrives (-want +got):\n%s", tt.handler, d)
			}
			for body, attrs := range got {
				if d := cmp.Diff(map[string]string{"event_type": "order.placed"}, attrs); d != "" {
					t.Errorf("attributes of %s sent back (-want +got):\n%s", body, d)
				}
			}
			if n, err := topology.Depth(context.Background(), s.client, s.ap.Queues[tt.handler].DLQURL); err != nil || n != 0 {
				t.Errorf("%s DLQ holds %d after redrive --all (err %v), want 0", tt.handler, n, err)
			}
		})
	}
}

// TestDLQListAndShowEscapeWhatCameFromAMessage: a dead letter whose
// attributes and error carry escape sequences and whose body carries C1 and
// DEL (SQS refuses ESC itself in a body, not in attributes) reaches the
// operator's terminal as visible escapes only.
func TestDLQListAndShowEscapeWhatCameFromAMessage(t *testing.T) {
	t.Parallel()
	s := newDLQStack(t)
	q := s.ap.Queues["billing"]
	hostile := map[string]sqstypes.MessageAttributeValue{
		"event_type":               str("order.placed\x1b[2J\x1b[H"),
		"customer":                 str("Ada\x1b]0;owned\x07\u009b31m\x7f"),
		worker.AttrDLQReason:       str("invalid_field\x1b[8m"),
		worker.AttrDLQError:        str("invalid event: \x1b[31mred\x1b[0m\ttab\nnewline"),
		worker.AttrDLQSourceQueue:  str(q.URL),
		worker.AttrDLQReceiveCount: str("1\x1b[1A"),
	}
	notJSON := s.send(t, q.DLQURL, "not json \u009b2J \x7f end", hostile)
	jsonBody := s.send(t, q.DLQURL, "{\"name\":\"Ada\u009b2J\x7f\"}", hostile)

	t.Run("list", func(t *testing.T) {
		out, err := s.orderctl(t, "list")
		if err != nil {
			t.Fatalf("dlq list: %v\n%s", err, out)
		}
		assertPrintable(t, "dlq list", out)
		for _, want := range []string{notJSON, jsonBody, `invalid_field\x1b[8m`, `\x1b[31mred\x1b[0m\x09tab\x0anewline`, "2 dead-lettered"} {
			if !strings.Contains(out, want) {
				t.Errorf("dlq list lacks %q:\n%s", want, out)
			}
		}
		if lines := strings.Count(out, "\n"); lines != 4 {
			t.Errorf("dlq list printed %d lines, want 4 (header, two letters, total):\n%s", lines, out)
		}
	})
	for _, tt := range []struct {
		name, id, body string
	}{
		{"a body that is not JSON", notJSON, "not json \u009b2J \x7f end"},
		{"a JSON body", jsonBody, "{\"name\":\"Ada\u009b2J\x7f\"}"},
	} {
		t.Run("show "+tt.name, func(t *testing.T) {
			out, err := s.orderctl(t, "show", tt.id)
			if err != nil {
				t.Fatalf("dlq show: %v\n%s", err, out)
			}
			assertPrintable(t, "dlq show", out)
			var got struct {
				Error      string            `json:"error"`
				Attributes map[string]string `json:"attributes"`
				Body       json.RawMessage   `json:"body"`
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("dlq show printed no JSON: %v\n%s", err, out)
			}
			// The escapes are JSON's: decoding gives back the exact values.
			if got.Error != aws.ToString(hostile[worker.AttrDLQError].StringValue) || got.Attributes["customer"] != aws.ToString(hostile["customer"].StringValue) {
				t.Errorf("dlq show decodes to error %q, customer %q; want the letter's own", got.Error, got.Attributes["customer"])
			}
			var body any
			if err := json.Unmarshal(got.Body, &body); err != nil {
				t.Fatal(err)
			}
			if s, ok := body.(string); ok && s != tt.body {
				t.Errorf("body decodes to %q, want %q", s, tt.body)
			}
		})
	}
}

// assertPrintable fails if out holds a character a terminal could act on:
// anything but graphic characters, spaces and newlines.
func assertPrintable(t *testing.T, what, out string) {
	t.Helper()
	for i, r := range out {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(out[i:]); size == 1 {
				t.Fatalf("%s printed the invalid byte %#x at %d:\n%q", what, out[i], i, out)
			}
		}
		if r != '\n' && !unicode.IsGraphic(r) {
			t.Fatalf("%s printed U+%04X at byte %d:\n%q", what, r, i, out)
		}
	}
}

func TestParseDLQ(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		want    dlqOptions
		wantErr string
	}{
		{"list", []string{"list", "--queue", "billing"}, dlqOptions{sub: "list", queue: "billing", limit: 100}, ""},
		{"show", []string{"show", "abc", "--queue", "billing"}, dlqOptions{sub: "show", showID: "abc", queue: "billing"}, ""},
		{"redrive by id", []string{"redrive", "--id", "abc"}, dlqOptions{sub: "redrive", id: "abc", timeout: dlq.RedriveTimeoutDefault}, ""},
		{"redrive all with a timeout", []string{"redrive", "--all", "--timeout", "30s"}, dlqOptions{sub: "redrive", all: true, timeout: 30 * time.Second}, ""},
		{"redrive without saying which", []string{"redrive"}, dlqOptions{}, "say which: --id ID, --reason R, or --all"},
		{"show without an id", []string{"show", "--queue", "billing"}, dlqOptions{}, "usage: orderctl dlq show MESSAGE_ID [--queue H]"},
		{"stray argument", []string{"list", "extra"}, dlqOptions{}, `unexpected arguments ["extra"]; ` + dlqUsage},
		{"unknown command", []string{"purge"}, dlqOptions{}, `unknown dlq command "purge" (list, show, redrive)`},
		{"nothing", nil, dlqOptions{}, dlqUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDLQ(tt.args)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(dlqOptions{})); d != "" {
				t.Errorf("options (-want +got):\n%s", d)
			}
		})
	}
}
