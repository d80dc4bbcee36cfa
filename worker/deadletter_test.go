package worker

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/orderpipe/orderpipe/worker/internal/sqsfake"
)

func TestCleanAttr(t *testing.T) {
	for _, tt := range []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{name: "plain text stays", in: "order 42 failed: stock", want: "order 42 failed: stock"},
		{name: "TAB LF CR stay", in: "a\tb\nc\rd", want: "a\tb\nc\rd"},
		{name: "ESC is escaped", in: "x\x1b[31mred", want: `x\x1b[31mred`},
		{name: "NUL and BEL are escaped", in: "\x00\x07", want: `\x00\x07`},
		{name: "DEL is escaped", in: "a\x7fb", want: `a\x7fb`},
		{name: "C1 CSI is escaped", in: "a\u009b2Jb", want: `a\x9b2Jb`},
		{name: "noncharacters SQS rejects are escaped", in: "a\ufffe\uffffb", want: `a\ufffe\uffffb`},
		{name: "invalid UTF-8 becomes U+FFFD", in: "a\xffb\xc3", want: "a\ufffdb\ufffd"},
		{name: "U+FFFD itself stays", in: "\ufffd", want: "\ufffd"},
		{name: "emoji and CJK stay", in: "💥 注文", want: "💥 注文"},
		{name: "within the limit stays whole", in: strings.Repeat("a", 10), limit: 10, want: strings.Repeat("a", 10)},
		{name: "over the limit is cut and marked", in: strings.Repeat("a", 11), limit: 10, want: "aaaaaaa…"},
		{name: "a cut never splits a rune", in: "aaaaaa€€", limit: 10, want: "aaaaaa…"},
		{name: "escapes count towards the limit", in: "\x1b\x1b\x1b", limit: 10, want: `\x1b\x1…`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := cleanAttr(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("cleanAttr(%q, %d) = %q, want %q", tt.in, tt.limit, got, tt.want)
			}
			if err := sqsfake.Check("body", map[string]sqstypes.MessageAttributeValue{"a": stringAttr(got)}); err != nil {
				t.Errorf("SQS would refuse %q: %v", got, err)
			}
		})
	}
}

// TestCleanAttrNeverLeavesAControl feeds every rune of the control and
// special ranges through cleanAttr.
func TestCleanAttrNeverLeavesAControl(t *testing.T) {
	var b strings.Builder
	for r := range rune(0x100) {
		b.WriteRune(r)
	}
	b.WriteString("\ud7ff\ue000\ufffd\ufffe\uffff\U00010000\U0010ffff")
	got := cleanAttr(b.String()+"\xed\xa0\x80", maxDLQValueLen) // an encoded surrogate is invalid UTF-8
	if !utf8.ValidString(got) || len(got) > maxDLQValueLen {
		t.Fatalf("cleanAttr: %d bytes, valid UTF-8 %t", len(got), utf8.ValidString(got))
	}
	for _, r := range got {
		if isControl(r) || !sqsAllowed(r) {
			t.Errorf("cleanAttr left %U", r)
		}
	}
}

func strAttr(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func binAttr(v []byte) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("Binary"), BinaryValue: v}
}

// incomingAttrs returns n string attributes a01, a02... plus extra.
func incomingAttrs(n int, extra map[string]sqstypes.MessageAttributeValue) map[string]sqstypes.MessageAttributeValue {
	out := maps.Clone(extra)
	if out == nil {
		out = map[string]sqstypes.MessageAttributeValue{}
	}
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("a%02d", i)
		out[name] = strAttr("value of " + name)
	}
	return out
}

func TestFitAttributes(t *testing.T) {
	own := map[string]sqstypes.MessageAttributeValue{
		AttrDLQReason: strAttr("r"), AttrDLQError: strAttr("e"), AttrDLQSourceQueue: strAttr("q"), AttrDLQReceiveCount: strAttr("1"),
	}
	product := map[string]sqstypes.MessageAttributeValue{
		"event_type": strAttr("order.created"), "schema_version": strAttr("1"), "traceparent": strAttr("00-ab-cd-01"),
	}
	for _, tt := range []struct {
		name       string
		incoming   map[string]sqstypes.MessageAttributeValue
		keepFirst  []string
		wantKept   []string // incoming names copied as attributes
		wantFolded []string
	}{
		{name: "none", incoming: nil},
		{name: "six fit beside the four", incoming: incomingAttrs(6, nil),
			wantKept: []string{"a01", "a02", "a03", "a04", "a05", "a06"}},
		{name: "seven: five kept by name, two folded", incoming: incomingAttrs(7, nil),
			wantKept: []string{"a01", "a02", "a03", "a04", "a05"}, wantFolded: []string{"a06", "a07"}},
		{name: "twelve: keep-first names first", incoming: incomingAttrs(9, product),
			keepFirst:  []string{"event_type", "schema_version", "traceparent", "absent", "event_type"},
			wantKept:   []string{"a01", "a02", "event_type", "schema_version", "traceparent"},
			wantFolded: []string{"a03", "a04", "a05", "a06", "a07", "a08", "a09"}},
		{name: "incoming runtime attributes are replaced, not counted",
			incoming: incomingAttrs(6, map[string]sqstypes.MessageAttributeValue{AttrDLQReason: strAttr("stale"), AttrDLQDroppedAttributes: strAttr("{}")}),
			wantKept: []string{"a01", "a02", "a03", "a04", "a05", "a06"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, folded := fitAttributes(tt.incoming, own, tt.keepFirst, AttrDLQDroppedAttributes)
			if len(got) > maxMessageAttributes {
				t.Errorf("%d attributes, SQS allows %d", len(got), maxMessageAttributes)
			}
			for name, v := range own {
				if diff := cmp.Diff(v, got[name], cmpopts.IgnoreUnexported(sqstypes.MessageAttributeValue{})); diff != "" {
					t.Errorf("%s (-want +got):\n%s", name, diff)
				}
			}
			var kept []string
			for name := range got {
				if _, ok := own[name]; !ok && name != AttrDLQDroppedAttributes {
					kept = append(kept, name)
				}
			}
			if diff := cmp.Diff(tt.wantKept, slices.Sorted(slices.Values(kept)), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("kept (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantFolded, folded, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("folded (-want +got):\n%s", diff)
			}
			if _, ok := got[AttrDLQDroppedAttributes]; ok != (len(tt.wantFolded) > 0) {
				t.Errorf("%s present: %t, want %t", AttrDLQDroppedAttributes, ok, len(tt.wantFolded) > 0)
			}
		})
	}
}

// TestFoldedAttributesComeBackExactly: the fold is valid for SQS and for a
// terminal, and DroppedAttributes restores every value byte for byte.
func TestFoldedAttributesComeBackExactly(t *testing.T) {
	fold := map[string]sqstypes.MessageAttributeValue{
		"csi":    strAttr("a\u009b2J\u007f"),
		"esc":    strAttr("x\x1b[31m\x00"),
		"html":   strAttr(`<a href="x">&</a>`),
		"nonchr": strAttr("\ufffe\uffff\u2028"),
		"number": {DataType: aws.String("Number.int"), StringValue: aws.String("42")},
		"sig":    binAttr([]byte{0, 1, 0x1b, 0xff}),
		"text":   strAttr("注文 💥 \"quoted\" \\"),
	}
	encoded := encodeFold(toFold(fold))
	if err := sqsfake.Check("body", map[string]sqstypes.MessageAttributeValue{AttrDLQDroppedAttributes: stringAttr(encoded)}); err != nil {
		t.Fatalf("SQS would refuse the fold %q: %v", encoded, err)
	}
	for _, r := range encoded {
		if isControl(r) {
			t.Fatalf("the fold holds %U: %q", r, encoded)
		}
	}
	got, err := DroppedAttributes(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(fold, got, cmpopts.IgnoreUnexported(sqstypes.MessageAttributeValue{})); diff != "" {
		t.Errorf("restored attributes (-want +got):\n%s", diff)
	}
	if _, err := DroppedAttributes("not json"); err == nil {
		t.Error("DroppedAttributes accepted text that is not JSON")
	}
}

func toFold(attrs map[string]sqstypes.MessageAttributeValue) map[string]foldedValue {
	out := map[string]foldedValue{}
	for name, v := range attrs {
		out[name] = foldedValue{DataType: aws.ToString(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue}
	}
	return out
}

func TestUnsendable(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{name: "InvalidMessageContents", err: &sqstypes.InvalidMessageContents{}, want: true},
		{name: "InvalidMessageContents, query-compatible code",
			err: &sqstypes.InvalidMessageContents{ErrorCodeOverride: aws.String("AWS.SimpleQueueService.InvalidMessageContents")}, want: true},
		{name: "InvalidAttributeValue", err: &sqstypes.InvalidAttributeValue{}, want: true},
		{name: "InvalidAttributeName", err: &sqstypes.InvalidAttributeName{}, want: true},
		{name: "InvalidParameterValue (too many attributes, too long)", err: &smithy.GenericAPIError{Code: "InvalidParameterValue"}, want: true},
		{name: "wrapped", err: fmt.Errorf("send: %w", &smithy.OperationError{ServiceID: "SQS", OperationName: "SendMessage", Err: &sqstypes.InvalidAttributeValue{}}), want: true},
		{name: "throttled", err: &smithy.GenericAPIError{Code: "RequestThrottled"}},
		{name: "queue missing", err: &sqstypes.QueueDoesNotExist{}},
		{name: "KMS throttled", err: &sqstypes.KmsThrottled{}},
		{name: "network", err: errors.New("connection reset by peer")},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := unsendable(tt.err); got != tt.want {
				t.Errorf("unsendable(%v) = %t, want %t", tt.err, got, tt.want)
			}
		})
	}
}

func TestMessageAttributesForTheDLQ(t *testing.T) {
	received := fromSQS(sqstypes.Message{MessageId: aws.String("m"), Body: aws.String("b"),
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{"sig": binAttr([]byte{1}), "n": {DataType: aws.String("Number"), StringValue: aws.String("7")}},
		Attributes:        map[string]string{"ApproximateReceiveCount": strconv.Itoa(3)}})
	if diff := cmp.Diff(map[string]string{"n": "7"}, received.Attributes); diff != "" {
		t.Errorf("Attributes (-want +got):\n%s", diff)
	}
	if got := received.sqsAttributes(); len(got) != 2 || aws.ToString(got["sig"].DataType) != "Binary" {
		t.Errorf("attributes for the DLQ: %v, want both, sig Binary", got)
	}
	built := &Message{Attributes: map[string]string{"k": "v"}}
	if got := built.sqsAttributes(); aws.ToString(got["k"].StringValue) != "v" {
		t.Errorf("a Message built by hand gives %v for the DLQ, want its Attributes", got)
	}
	if got := fromSQS(sqstypes.Message{}).sqsAttributes(); got == nil || len(got) != 0 {
		t.Errorf("a message without attributes gives %v, want none", got)
	}
}
