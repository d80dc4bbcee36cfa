package worker_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/orderpipe/orderpipe/worker"
	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

func str(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func bin(v []byte) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("Binary"), BinaryValue: v}
}

var ignoreAttrInternals = cmpopts.IgnoreUnexported(sqstypes.MessageAttributeValue{})

// attrsN returns n string attributes a01, a02... plus extra.
func attrsN(n int, extra map[string]sqstypes.MessageAttributeValue) map[string]sqstypes.MessageAttributeValue {
	out := map[string]sqstypes.MessageAttributeValue{}
	maps.Copy(out, extra)
	for i := 1; i <= n; i++ {
		out[fmt.Sprintf("a%02d", i)] = str(fmt.Sprintf("value %d", i))
	}
	return out
}

// deadLetterOne runs a consumer whose handler fails every message with
// worker.Permanent(reason, err), puts one message and waits until it is
// settled: deleted (dead-lettered) or scheduled for a retry.
func deadLetterOne(t *testing.T, f *sqsfake.Fake, cfg worker.Config, body string, attrs map[string]sqstypes.MessageAttributeValue, reason string, err error) (*rig, string, int32) {
	t.Helper()
	var calls atomic.Int32
	r := start(t, f, worker.HandlerFunc(func(context.Context, *worker.Message) error {
		calls.Add(1)
		return worker.Permanent(reason, err)
	}), cfg)
	id := r.put(body, attrs)
	r.eventually("the message settled", func() bool { return r.deleted(id) || len(r.visibilityChanges()) > 0 })
	r.stop()
	return r, id, calls.Load()
}

// TestPermanentErrorsAreDeadLetteredAtOnce: on its first receive, the
// message goes to the DLQ with the four orderpipe_dlq_* attributes and its
// own, and is deleted from the source queue.
func TestPermanentErrorsAreDeadLetteredAtOnce(t *testing.T) {
	t.Parallel()
	attrs := map[string]sqstypes.MessageAttributeValue{"event_type": str("order.created")}
	r, id, calls := deadLetterOne(t, newFake(), worker.Config{}, `{"order":1}`, attrs, "bad_input", errors.New("never valid"))
	if calls != 1 {
		t.Errorf("handler ran %d times, want 1", calls)
	}
	if !r.deleted(id) {
		t.Error("the dead-lettered message was not deleted from the source queue")
	}
	dlq := r.dlq()
	if len(dlq) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(dlq))
	}
	want := map[string]sqstypes.MessageAttributeValue{
		worker.AttrDLQReason:       str("bad_input"),
		worker.AttrDLQError:        str("permanent (bad_input): never valid"),
		worker.AttrDLQSourceQueue:  str(srcURL),
		worker.AttrDLQReceiveCount: str("1"),
		"event_type":               str("order.created"),
	}
	if diff := cmp.Diff(want, dlq[0].Attributes, ignoreAttrInternals); diff != "" {
		t.Errorf("DLQ attributes (-want +got):\n%s", diff)
	}
	if dlq[0].Body != `{"order":1}` {
		t.Errorf("DLQ body %q", dlq[0].Body)
	}
	if len(r.logs.find("message dead-lettered")) != 1 {
		t.Error("the dead-lettering was not logged")
	}
}

// TestDLQAttributePrefixIsTheProducts: another product names its reason
// attributes with its own prefix, and nothing of orderpipe's is written.
func TestDLQAttributePrefixIsTheProducts(t *testing.T) {
	t.Parallel()
	r, _, _ := deadLetterOne(t, newFake(), worker.Config{DLQAttributePrefix: "shop_dlq_"}, `{"order":1}`, nil, "bad_input", errors.New("never valid"))
	dlq := r.dlq()
	if len(dlq) != 1 {
		t.Fatalf("DLQ holds %d messages, want 1", len(dlq))
	}
	names := slices.Sorted(maps.Keys(dlq[0].Attributes))
	want := []string{"shop_dlq_error", "shop_dlq_reason", "shop_dlq_receive_count", "shop_dlq_source_queue"}
	if !slices.Equal(names, want) {
		t.Errorf("DLQ attribute names %v, want %v", names, want)
	}
}

// TestDeadLetterFitsAnyIncomingMessage is the regression test of the DLQ
// copy SQS refused: more than six incoming attributes (with the runtime's
// four, over SQS's ten), control characters, an error cut inside a rune. The
// fake refuses what SQS refuses; every message must reach the DLQ on the
// first try, with the runtime's four attributes.
func TestDeadLetterFitsAnyIncomingMessage(t *testing.T) {
	t.Parallel()
	product := map[string]sqstypes.MessageAttributeValue{
		"event_type": str("order.created"), "schema_version": str("1"), "traceparent": str("00-4bf92f3577b34da6-00f067aa0ba902b7-01"),
	}
	longErr := strings.Repeat("€", 667) // 2001 bytes; after the 23-byte prefix no cut at 1021 falls on a rune boundary
	for _, tt := range []struct {
		name   string
		attrs  map[string]sqstypes.MessageAttributeValue
		reason string
		err    error
		check  func(t *testing.T, got map[string]sqstypes.MessageAttributeValue)
	}{
		{
			name: "12 incoming attributes", attrs: attrsN(9, product), reason: "bad_input", err: errors.New("never valid"),
			check: func(t *testing.T, got map[string]sqstypes.MessageAttributeValue) {
				t.Helper()
				for _, name := range []string{"event_type", "schema_version", "traceparent", "a01", "a02"} {
					if diff := cmp.Diff(attrsN(9, product)[name], got[name], ignoreAttrInternals); diff != "" {
						t.Errorf("kept %s (-want +got):\n%s", name, diff)
					}
				}
				checkFolded(t, got, attrsN(9, product), "a03", "a04", "a05", "a06", "a07", "a08", "a09")
			},
		},
		{
			name: "binary attributes keep their type and bytes", reason: "bad_input", err: errors.New("never valid"),
			attrs: map[string]sqstypes.MessageAttributeValue{"sig": bin([]byte{0, 1, 0x1b, 0xff}), "event_type": str("order.created")},
			check: func(t *testing.T, got map[string]sqstypes.MessageAttributeValue) {
				t.Helper()
				if diff := cmp.Diff(bin([]byte{0, 1, 0x1b, 0xff}), got["sig"], ignoreAttrInternals); diff != "" {
					t.Errorf("binary attribute (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "binary attribute folded", reason: "bad_input", err: errors.New("never valid"),
			attrs: attrsN(6, map[string]sqstypes.MessageAttributeValue{"zsig": bin([]byte{0xde, 0xad})}),
			check: func(t *testing.T, got map[string]sqstypes.MessageAttributeValue) {
				t.Helper()
				checkFolded(t, got, map[string]sqstypes.MessageAttributeValue{"a06": str("value 6"), "zsig": bin([]byte{0xde, 0xad})}, "a06", "zsig")
			},
		},
		{
			name: "control characters", reason: "bad\x1b[0m", err: errors.New("name \"\x1b]0;pwned\x07\" \u009b2J bad \xff"),
			attrs: map[string]sqstypes.MessageAttributeValue{"note": str("a\u009b2Jb\x1b[0m\x7f")},
			check: func(t *testing.T, got map[string]sqstypes.MessageAttributeValue) {
				t.Helper()
				want := map[string]string{
					worker.AttrDLQReason: `bad\x1b[0m`,
					worker.AttrDLQError:  `permanent (bad\x1b[0m): name "\x1b]0;pwned\x07" \x9b2J bad ` + "\ufffd",
					"note":               `a\x9b2Jb\x1b[0m\x7f`,
				}
				for name, w := range want {
					if g := aws.ToString(got[name].StringValue); g != w {
						t.Errorf("%s = %q, want %q", name, g, w)
					}
				}
			},
		},
		{
			name: "2000-byte error with multi-byte runes at the cut", reason: "bad_input", err: errors.New(longErr),
			check: func(t *testing.T, got map[string]sqstypes.MessageAttributeValue) {
				t.Helper()
				full := "permanent (bad_input): " + longErr
				g := aws.ToString(got[worker.AttrDLQError].StringValue)
				kept, cut := strings.CutSuffix(g, "…")
				if len(g) > 1024 || len(g) < 1020 || !utf8.ValidString(g) || !cut || !strings.HasPrefix(full, kept) {
					t.Errorf("error attribute of %d bytes (valid UTF-8 %t, marked cut %t, a prefix of the error %t), want 1020-1024 bytes, valid, marked, a prefix",
						len(g), utf8.ValidString(g), cut, strings.HasPrefix(full, kept))
				}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := worker.Config{DeadLetterKeepAttributes: []string{"event_type", "schema_version", "traceparent"}}
			r, id, _ := deadLetterOne(t, newFake(), cfg, "body", tt.attrs, tt.reason, tt.err)
			for _, c := range r.sqs.Calls(sqsfake.OpSend) {
				if c.Err != nil {
					t.Errorf("SQS refused the DLQ copy: %v", c.Err)
				}
			}
			if !r.deleted(id) {
				t.Fatal("message not dead-lettered (not deleted from the source queue)")
			}
			dlq := r.dlq()
			if len(dlq) != 1 {
				t.Fatalf("DLQ holds %d messages, want 1", len(dlq))
			}
			got := dlq[0].Attributes
			for _, name := range []string{worker.AttrDLQReason, worker.AttrDLQError, worker.AttrDLQSourceQueue, worker.AttrDLQReceiveCount} {
				if _, ok := got[name]; !ok {
					t.Errorf("DLQ copy lacks %s", name)
				}
			}
			tt.check(t, got)
		})
	}
}

// checkFolded checks that got folds exactly the names given, with their
// values in want.
func checkFolded(t *testing.T, got, want map[string]sqstypes.MessageAttributeValue, names ...string) {
	t.Helper()
	folded, err := worker.DroppedAttributes(aws.ToString(got[worker.AttrDLQDroppedAttributes].StringValue))
	if err != nil {
		t.Fatal(err)
	}
	wantFolded := map[string]sqstypes.MessageAttributeValue{}
	for _, name := range names {
		wantFolded[name] = want[name]
		if _, ok := got[name]; ok {
			t.Errorf("%s both kept and folded", name)
		}
	}
	if diff := cmp.Diff(wantFolded, folded, ignoreAttrInternals); diff != "" {
		t.Errorf("folded attributes (-want +got):\n%s", diff)
	}
}

// TestRefusedDeadLetterCopy: when SQS refuses the copy for what it holds,
// it is sent once more with the body and the four orderpipe_dlq_* attributes
// only; any other failure, or a second refusal, leads to a retry, never to a
// delete.
func TestRefusedDeadLetterCopy(t *testing.T) {
	t.Parallel()
	refused := &sqstypes.InvalidAttributeValue{Message: aws.String("refused")}
	big := strings.Repeat("x", sqsfake.MaxMessageSize-1000)
	for _, tt := range []struct {
		name         string
		body         string
		attrs        map[string]sqstypes.MessageAttributeValue
		sendErrs     []error // injected, in order
		wantSends    int
		wantDLQ      bool
		wantDropped  string // the names logged as dropped
		wantRetryErr string
	}{
		{name: "refused attributes: sent again without them", body: "b", sendErrs: []error{refused},
			attrs: map[string]sqstypes.MessageAttributeValue{"event_type": str("x"), "trace": str("y")}, wantSends: 2, wantDLQ: true, wantDropped: "[event_type trace]"},
		{name: "too large with its attributes: sent again without them", body: big,
			attrs: map[string]sqstypes.MessageAttributeValue{"blob": str(strings.Repeat("y", 2000))}, wantSends: 2, wantDLQ: true, wantDropped: "[blob]"},
		{name: "refused twice: retried", body: "b", sendErrs: []error{refused, refused}, wantSends: 2, wantRetryErr: "refused"},
		{name: "unavailable: retried, not sent again", body: "b", sendErrs: []error{errors.New("connection reset by peer")},
			wantSends: 1, wantRetryErr: "connection reset by peer"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFake()
			f.FailNext(sqsfake.OpSend, tt.sendErrs...)
			r, id, _ := deadLetterOne(t, f, worker.Config{}, tt.body, tt.attrs, "bad_input", errors.New("never valid"))
			sends := r.sqs.Calls(sqsfake.OpSend)
			if len(sends) != tt.wantSends {
				t.Fatalf("%d sends to the DLQ, want %d", len(sends), tt.wantSends)
			}
			if tt.wantSends == 2 {
				in, ok := sends[1].In.(*sqs.SendMessageInput)
				if !ok {
					t.Fatalf("the second send's input is %T", sends[1].In)
				}
				if got := in.MessageAttributes; len(got) != 4 {
					t.Errorf("second send carries %d attributes, want the runtime's 4", len(got))
				}
			}
			if got := len(r.dlq()) == 1 && r.deleted(id); got != tt.wantDLQ {
				t.Errorf("dead-lettered and deleted: %t, want %t", got, tt.wantDLQ)
			}
			if tt.wantDropped != "" {
				logged := r.logs.find("the DLQ refused the copy")
				if len(logged) != 1 || logged[0].Attrs["dropped_attributes"] != tt.wantDropped {
					t.Errorf("logged %+v, want dropped_attributes=%s", logged, tt.wantDropped)
				}
			}
			if tt.wantRetryErr == "" {
				return
			}
			m := r.message(id)
			if r.deleteAttempts(m.Receipt) != 0 || len(r.dlq()) != 0 {
				t.Error("a message whose DLQ copy failed was deleted or copied")
			}
			if got := r.visibilityChanges(); len(got) != 1 || got[0] != (visibilityChange{Receipt: m.Receipt, Timeout: policyDelay}) {
				t.Errorf("visibility changes %+v, want a retry after %s", got, policyDelay)
			}
			logged := r.logs.find("handler failed; will retry")
			if len(logged) != 1 || !strings.Contains(logged[0].Attrs["err"], tt.wantRetryErr) || !strings.Contains(logged[0].Attrs["err"], "dead-letter (bad_input)") {
				t.Errorf("retry logged as %+v, want the DLQ error", logged)
			}
		})
	}
}
