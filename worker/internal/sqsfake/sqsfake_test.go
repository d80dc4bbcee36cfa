package sqsfake

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

func str(v string) sqstypes.MessageAttributeValue {
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}

func errCode(err error) string {
	if api, ok := errors.AsType[smithy.APIError](err); ok {
		return api.ErrorCode()
	}
	return ""
}

// TestCheckRefusesWhatSQSRefuses: the runtime's tests rely on these rules
// being SQS's.
func TestCheckRefusesWhatSQSRefuses(t *testing.T) {
	ten, eleven := map[string]sqstypes.MessageAttributeValue{}, map[string]sqstypes.MessageAttributeValue{}
	for _, c := range "abcdefghij" {
		ten[string(c)], eleven[string(c)] = str("v"), str("v")
	}
	eleven["k"] = str("v")
	for _, tt := range []struct {
		name     string
		body     string
		attrs    map[string]sqstypes.MessageAttributeValue
		wantCode string // "" for accepted
	}{
		{name: "plain", body: "hello"},
		{name: "ten attributes", body: "b", attrs: ten},
		{name: "eleven attributes", body: "b", attrs: eleven, wantCode: "InvalidParameterValue"},
		{name: "empty body", body: "", wantCode: "InvalidParameterValue"},
		{name: "ESC in the body", body: "a\x1bb", wantCode: "InvalidMessageContents"},
		{name: "C1 and DEL in the body are allowed", body: "a\u009b\x7fb"},
		{name: "U+FFFE in the body", body: "a\ufffe", wantCode: "InvalidMessageContents"},
		{name: "invalid UTF-8 in the body", body: "a\xff", wantCode: "InvalidMessageContents"},
		{name: "ESC in an attribute", body: "b", attrs: map[string]sqstypes.MessageAttributeValue{"a": str("\x1b")}, wantCode: "InvalidParameterValue"},
		{name: "empty attribute", body: "b", attrs: map[string]sqstypes.MessageAttributeValue{"a": str("")}, wantCode: "InvalidParameterValue"},
		{name: "binary attribute with any bytes", body: "b",
			attrs: map[string]sqstypes.MessageAttributeValue{"a": {DataType: aws.String("Binary"), BinaryValue: []byte{0, 0x1b, 0xff}}}},
		{name: "unknown type", body: "b", attrs: map[string]sqstypes.MessageAttributeValue{"a": {DataType: aws.String("string"), StringValue: aws.String("v")}},
			wantCode: "InvalidParameterValue"},
		{name: "reserved name", body: "b", attrs: map[string]sqstypes.MessageAttributeValue{"AWS.x": str("v")}, wantCode: "InvalidParameterValue"},
		{name: "bad name", body: "b", attrs: map[string]sqstypes.MessageAttributeValue{"a b": str("v")}, wantCode: "InvalidParameterValue"},
		{name: "at the size limit", body: strings.Repeat("x", MaxMessageSize-len("a")-len("String")-1),
			attrs: map[string]sqstypes.MessageAttributeValue{"a": str("v")}},
		{name: "over the size limit", body: strings.Repeat("x", MaxMessageSize-len("a")-len("String")),
			attrs: map[string]sqstypes.MessageAttributeValue{"a": str("v")}, wantCode: "InvalidParameterValue"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.body, tt.attrs)
			if got := errCode(err); got != tt.wantCode || (err != nil) != (tt.wantCode != "") {
				t.Errorf("Check: %v (code %q), want code %q", err, got, tt.wantCode)
			}
		})
	}
}

// TestDeliveries: receipts change per receive, receives are counted, a
// received message stays hidden for the visibility timeout, and deletes and
// visibility changes answer as SQS does.
func TestDeliveries(t *testing.T) {
	ctx := context.Background()
	const url = "q"
	f := New()
	f.AddQueue(url, time.Hour)
	id := f.Put(url, Message{Body: "b", Attributes: map[string]sqstypes.MessageAttributeValue{"k": str("v")}})
	receive := func() []sqstypes.Message {
		t.Helper()
		out, err := f.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(url), MaxNumberOfMessages: 10,
			MessageAttributeNames:       []string{"All"},
			MessageSystemAttributeNames: []sqstypes.MessageSystemAttributeName{sqstypes.MessageSystemAttributeNameApproximateReceiveCount}})
		if err != nil {
			t.Fatal(err)
		}
		return out.Messages
	}
	first := receive()
	if len(first) != 1 || first[0].Attributes["ApproximateReceiveCount"] != "1" || aws.ToString(first[0].MessageAttributes["k"].StringValue) != "v" {
		t.Fatalf("first receive: %+v", first)
	}
	if again := receive(); len(again) != 0 {
		t.Fatalf("an invisible message was received again: %+v", again)
	}
	if _, err := f.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle}); err != nil {
		t.Fatal(err)
	}
	second := receive()
	if len(second) != 1 || second[0].Attributes["ApproximateReceiveCount"] != "2" || *second[0].ReceiptHandle == *first[0].ReceiptHandle {
		t.Fatalf("second receive: %+v (first receipt %s)", second, *first[0].ReceiptHandle)
	}
	var notInFlight *sqstypes.MessageNotInflight
	if _, err := f.ChangeMessageVisibility(ctx, &sqs.ChangeMessageVisibilityInput{QueueUrl: aws.String(url), ReceiptHandle: first[0].ReceiptHandle, VisibilityTimeout: 5}); !errors.As(err, &notInFlight) {
		t.Errorf("visibility change with a stale receipt: %v, want MessageNotInflight", err)
	}
	out, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: []sqstypes.DeleteMessageBatchRequestEntry{
		{Id: aws.String("stale"), ReceiptHandle: first[0].ReceiptHandle},
		{Id: aws.String("unknown"), ReceiptHandle: aws.String("nope")},
	}})
	if err != nil || len(out.Successful) != 1 || len(out.Failed) != 1 || aws.ToString(out.Failed[0].Code) != "ReceiptHandleIsInvalid" {
		t.Fatalf("delete: %+v, %v; want the stale entry to succeed and the unknown one to fail", out, err)
	}
	if m, _ := f.Message(url, id); m.Deleted {
		t.Error("a delete with a stale receipt deleted the message")
	}
	f.FailEntries(func(Op, string) string { return "InternalError" })
	out, _ = f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: []sqstypes.DeleteMessageBatchRequestEntry{{Id: aws.String("1"), ReceiptHandle: second[0].ReceiptHandle}}})
	if len(out.Failed) != 1 || aws.ToString(out.Failed[0].Code) != "InternalError" {
		t.Errorf("injected entry failure: %+v", out)
	}
	f.FailEntries(nil)
	if _, err := f.DeleteMessageBatch(ctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(url), Entries: []sqstypes.DeleteMessageBatchRequestEntry{{Id: aws.String("1"), ReceiptHandle: second[0].ReceiptHandle}}}); err != nil {
		t.Fatal(err)
	}
	if m, _ := f.Message(url, id); !m.Deleted {
		t.Error("a delete with the latest receipt left the message")
	}
	if n := len(f.Calls(OpReceive)); n != 3 {
		t.Errorf("%d receives recorded, want 3", n)
	}
}

// TestFaults: FailNext fails calls in order without effect, and a call with
// an ended context fails as the SDK's would.
func TestFaults(t *testing.T) {
	f := New()
	f.AddQueue("q", time.Minute)
	boom := errors.New("boom")
	f.FailNext(OpSend, boom)
	in := &sqs.SendMessageInput{QueueUrl: aws.String("q"), MessageBody: aws.String("b")}
	if _, err := f.SendMessage(context.Background(), in); !errors.Is(err, boom) {
		t.Errorf("first send: %v, want the injected error", err)
	}
	if _, err := f.SendMessage(context.Background(), in); err != nil {
		t.Errorf("second send: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := f.SendMessage(ctx, in); !errors.Is(err, context.Canceled) {
		t.Errorf("send with a cancelled context: %v", err)
	}
	if n := len(f.Messages("q")); n != 1 {
		t.Errorf("queue holds %d messages, want 1", n)
	}
	var missing *sqstypes.QueueDoesNotExist
	if _, err := f.SendMessage(context.Background(), &sqs.SendMessageInput{QueueUrl: aws.String("nope"), MessageBody: aws.String("b")}); !errors.As(err, &missing) {
		t.Errorf("send to a missing queue: %v", err)
	}
}
