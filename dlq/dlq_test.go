package dlq_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/dlq"
	"github.com/orderpipe/orderpipe/internal/testenv"
	"github.com/orderpipe/orderpipe/topology"
	"github.com/orderpipe/orderpipe/worker"
)

// queue returns a fresh queue and DLQ of the declared topology, and a client.
func queue(t *testing.T) (*sqs.Client, topology.AppliedQueue) {
	t.Helper()
	env := testenv.Open(t, "dlq")
	_, ap := env.Topology(t)
	return sqs.NewFromConfig(env.AWS), ap.Queues["billing"]
}

// deadLetter puts a message into the DLQ as the worker leaves one, and
// returns its id.
func deadLetter(t *testing.T, client *sqs.Client, q topology.AppliedQueue, body, reason string) string {
	t.Helper()
	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	out, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(q.DLQURL), MessageBody: aws.String(body),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"event_type":               str("order.placed"),
			worker.AttrDLQReason:       str(reason),
			worker.AttrDLQError:        str("invalid event: " + reason),
			worker.AttrDLQSourceQueue:  str(q.URL),
			worker.AttrDLQReceiveCount: str("1"),
		},
	})
	if err != nil {
		t.Fatalf("dead-letter %s: %v", body, err)
	}
	return aws.ToString(out.MessageId)
}

func deadLetters(t *testing.T, client *sqs.Client, q topology.AppliedQueue, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		ids = append(ids, deadLetter(t, client, q, fmt.Sprintf(`{"n":%d}`, i), "invalid_field"))
	}
	slices.Sort(ids)
	return ids
}

func ids(letters []dlq.Letter) []string {
	var out []string
	for _, l := range letters {
		out = append(out, l.ID)
	}
	slices.Sort(out)
	return out
}

// listAll lists the DLQ once. A message a walk left hidden would be missing
// for holdFor (30 s): far longer than a List.
func listAll(t *testing.T, client *sqs.Client, q topology.AppliedQueue) []string {
	t.Helper()
	letters, err := dlq.List(context.Background(), client, q.DLQURL, 0)
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	return ids(letters)
}

func TestListReadsEveryLetterAndLeavesThemThere(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	want := deadLetter(t, client, q, "not json \u009b2J", "malformed_json")
	letters, err := dlq.List(context.Background(), client, q.DLQURL, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(letters) != 1 {
		t.Fatalf("listed %d letters, want 1", len(letters))
	}
	l := letters[0]
	got := dlq.Letter{ID: l.ID, Reason: l.Reason, Error: l.Error, ReceiveCount: l.ReceiveCount, SourceQueue: l.SourceQueue, Body: l.Body, Attributes: l.Attributes}
	wantL := dlq.Letter{ID: want, Reason: "malformed_json", Error: "invalid event: malformed_json", ReceiveCount: "1", SourceQueue: q.URL,
		Body: "not json \u009b2J", Attributes: map[string]string{"event_type": "order.placed"}}
	if d := cmp.Diff(wantL, got, cmp.AllowUnexported(dlq.Letter{})); d != "" {
		t.Errorf("letter (-want +got):\n%s", d)
	}
	if time.Since(l.SentAt) > time.Minute || time.Since(l.SentAt) < -time.Minute {
		t.Errorf("SentAt = %s, want about now", l.SentAt)
	}
	if d := cmp.Diff([]string{want}, listAll(t, client, q)); d != "" {
		t.Errorf("after a List, the DLQ holds (-want +got):\n%s", d)
	}
}

// TestListHandsBackTheRestOfABatch: List stops at its limit in the middle of
// a received batch; the rest of the batch must be visible again at once,
// not hidden for holdFor.
func TestListHandsBackTheRestOfABatch(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	want := deadLetters(t, client, q, 5)
	letters, err := dlq.List(context.Background(), client, q.DLQURL, 2)
	if err != nil || len(letters) != 2 {
		t.Fatalf("List with limit 2: %d letters, err %v", len(letters), err)
	}
	if d := cmp.Diff(want, listAll(t, client, q)); d != "" {
		t.Errorf("right after a List with a limit, the DLQ shows (-want +got):\n%s", d)
	}
}

// failingSend is the real client with the n-th SendMessage failing.
type failingSend struct {
	*sqs.Client

	n     int32
	calls atomic.Int32
}

func (c *failingSend) SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	if c.calls.Add(1) == c.n {
		return nil, errors.New("injected: send failed")
	}
	return c.Client.SendMessage(ctx, in, opts...)
}

// TestRedriveHandsBackTheRestWhenASendFails: a redrive that fails half-way
// through a batch leaves the messages it did not move visible at once.
func TestRedriveHandsBackTheRestWhenASendFails(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	deadLetters(t, client, q, 4)
	n, err := dlq.Redrive(context.Background(), &failingSend{Client: client, n: 2}, q.DLQURL, q.URL, nil)
	if err == nil || n != 1 {
		t.Fatalf("redrive with the second send failing: moved %d, err %v; want 1 and an error", n, err)
	}
	if got := listAll(t, client, q); len(got) != 3 {
		t.Errorf("right after the failed redrive, the DLQ shows %d letters, want 3", len(got))
	}
}

// redeadLetter is the real client plus what a running worker does with a
// message that still fails: every message sent back to the source queue is
// dead-lettered again at once, under a new message id.
type redeadLetter struct {
	*sqs.Client

	q     topology.AppliedQueue
	again atomic.Int32
}

func (c *redeadLetter) SendMessage(ctx context.Context, in *sqs.SendMessageInput, opts ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	out, err := c.Client.SendMessage(ctx, in, opts...)
	if err != nil || aws.ToString(in.QueueUrl) != c.q.URL {
		return out, err
	}
	again := *in
	again.QueueUrl = aws.String(c.q.DLQURL)
	again.MessageAttributes = maps.Clone(in.MessageAttributes)
	again.MessageAttributes[worker.AttrDLQReason] = sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String("invalid_field")}
	if _, err := c.Client.SendMessage(ctx, &again); err != nil {
		return nil, fmt.Errorf("dead-letter again: %w", err)
	}
	c.again.Add(1)
	return out, nil
}

// redriveBound is how long redriveWithin lets RedriveWith run.
const redriveBound = 30 * time.Second

// redriveWithin runs RedriveWith, failing the test if it has not returned
// within redriveBound.
func redriveWithin(t *testing.T, client dlq.SQSAPI, cfg dlq.RedriveConfig) (dlq.RedriveResult, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		res dlq.RedriveResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := dlq.RedriveWith(ctx, client, cfg)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(redriveBound):
		cancel()
		r := <-done
		t.Fatalf("redrive did not return within %s: it had sent back %d messages (the DLQ held %d at the start)", redriveBound, r.res.Redriven, r.res.AtStart)
		return r.res, r.err
	}
}

// TestRedriveSendsBackOnlyWhatWasThere: with the messages failing again at
// once, each of the three is sent back exactly once, and the three copies
// dead-lettered again are left.
func TestRedriveSendsBackOnlyWhatWasThere(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	deadLetters(t, client, q, 3)
	loop := &redeadLetter{Client: client, q: q}
	var bodies []string
	res, err := redriveWithin(t, loop, dlq.RedriveConfig{DLQURL: q.DLQURL, SourceURL: q.URL,
		RedrivenFunc: func(l dlq.Letter, _ string) { bodies = append(bodies, l.Body) }})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(bodies)
	if d := cmp.Diff([]string{`{"n":0}`, `{"n":1}`, `{"n":2}`}, bodies); d != "" {
		t.Errorf("sent back (-want +got):\n%s", d)
	}
	if res.Redriven != 3 || res.Newer != 3 || res.AtStart != 3 || res.Stopped != "" {
		t.Errorf("result = %+v, want 3 redriven, 3 newer left, 3 at the start, not stopped", res)
	}
}

// TestRedriveStopsAtTheBoundWhenClocksDisagree: this host's clock an hour
// ahead of SQS's, every copy dead-lettered again looks older than the
// start; the count bound (depth at the start + margin) stops the redrive.
func TestRedriveStopsAtTheBoundWhenClocksDisagree(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	deadLetters(t, client, q, 3)
	loop := &redeadLetter{Client: client, q: q}
	res, err := redriveWithin(t, loop, dlq.RedriveConfig{DLQURL: q.DLQURL, SourceURL: q.URL, Margin: 4,
		NowFunc: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if want := (dlq.RedriveResult{Redriven: 7, AtStart: 3, Bound: 7, Stopped: dlq.StoppedBound}); res != want {
		t.Errorf("result = %+v, want %+v", res, want)
	}
}

// TestRedriveStopsAtItsDeadline: clocks apart and no count bound to speak
// of, the deadline ends the walk.
func TestRedriveStopsAtItsDeadline(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	deadLetters(t, client, q, 2)
	loop := &redeadLetter{Client: client, q: q}
	start := time.Now()
	res, err := redriveWithin(t, loop, dlq.RedriveConfig{DLQURL: q.DLQURL, SourceURL: q.URL, Margin: 1 << 20, Timeout: 3 * time.Second,
		NowFunc: func() time.Time { return time.Now().Add(time.Hour) }})
	if !errors.Is(err, dlq.ErrDeadline) {
		t.Fatalf("err = %v, want ErrDeadline (result %+v)", err, res)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the redrive took %s with a 3 s timeout", took)
	}
}

// TestRedriveLeavesWhatCameAfterItsStart: this host's clock an hour behind,
// every message looks dead-lettered after the start: none is sent back, all
// are counted and visible again at once.
func TestRedriveLeavesWhatCameAfterItsStart(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	want := deadLetters(t, client, q, 3)
	res, err := redriveWithin(t, client, dlq.RedriveConfig{DLQURL: q.DLQURL, SourceURL: q.URL,
		NowFunc: func() time.Time { return time.Now().Add(-time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if res.Redriven != 0 || res.Newer != 3 {
		t.Errorf("result = %+v, want none redriven, 3 newer", res)
	}
	if d := cmp.Diff(want, listAll(t, client, q)); d != "" {
		t.Errorf("after the redrive, the DLQ shows (-want +got):\n%s", d)
	}
}

func TestRedriveConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  dlq.RedriveConfig
		want string
	}{
		{"no DLQ", dlq.RedriveConfig{SourceURL: "s"}, "dlq: RedriveConfig.DLQURL is required"},
		{"no source", dlq.RedriveConfig{DLQURL: "d"}, "dlq: RedriveConfig.SourceURL is required"},
		{"negative max", dlq.RedriveConfig{DLQURL: "d", SourceURL: "s", Max: -1}, "dlq: RedriveConfig.Max is -1, want 0 (no limit) or more"},
		{"fine", dlq.RedriveConfig{DLQURL: "d", SourceURL: "s"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if err := tt.cfg.Validate(); err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Validate() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestRedriveRestoresFoldedAttributes: a message that had more attributes
// than fit beside the runtime's reason was dead-lettered with the rest folded
// into orderpipe_dlq_dropped_attributes; the redriven copy has every one of
// its own attributes back, and none of the runtime's.
func TestRedriveRestoresFoldedAttributes(t *testing.T) {
	t.Parallel()
	client, q := queue(t)
	str := func(v string) sqstypes.MessageAttributeValue {
		return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
	}
	folded := `{"tenant":{"DataType":"String","StringValue":"acme"},"blob":{"DataType":"Binary","BinaryValue":"AAEC"}}`
	if _, err := client.SendMessage(context.Background(), &sqs.SendMessageInput{
		QueueUrl: aws.String(q.DLQURL), MessageBody: aws.String(`{"n":"folded"}`),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"event_type":                    str("order.placed"),
			worker.AttrDLQReason:            str("invalid_field"),
			worker.AttrDLQError:             str("invalid event"),
			worker.AttrDLQSourceQueue:       str(q.URL),
			worker.AttrDLQReceiveCount:      str("1"),
			worker.AttrDLQDroppedAttributes: str(folded),
		},
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := dlq.Redrive(context.Background(), client, q.DLQURL, q.URL, nil); err != nil || n != 1 {
		t.Fatalf("redrive moved %d, err %v; want 1", n, err)
	}
	var got map[string]sqstypes.MessageAttributeValue
	testenv.Eventually(t, 10*time.Second, func() error {
		out, err := client.ReceiveMessage(context.Background(), &sqs.ReceiveMessageInput{QueueUrl: aws.String(q.URL), WaitTimeSeconds: 1, MessageAttributeNames: []string{"All"}})
		if err != nil {
			return err
		}
		if len(out.Messages) != 1 {
			return errors.New("the redriven copy has not arrived")
		}
		got = out.Messages[0].MessageAttributes
		return nil
	})
	names := slices.Sorted(maps.Keys(got))
	if want := []string{"blob", "event_type", "tenant"}; !slices.Equal(names, want) {
		t.Fatalf("redriven copy's attributes %v, want %v", names, want)
	}
	if v := aws.ToString(got["tenant"].StringValue); v != "acme" {
		t.Errorf("tenant = %q, want acme", v)
	}
	if b := got["blob"].BinaryValue; string(b) != "\x00\x01\x02" || aws.ToString(got["blob"].DataType) != "Binary" {
		t.Errorf("blob = %v (%s), want the 3 bytes 00 01 02, Binary", b, aws.ToString(got["blob"].DataType))
	}
}
