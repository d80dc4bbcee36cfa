package lambdafn

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/worker"
)

// TestRecordRoundTrip: a received SQS message, turned into the event
// source's record (as JSON, the way Lambda sends it) and back, is the
// message the worker runtime would have received: body, receipt, receive
// count, sent time, and every attribute with its type (a Binary one byte
// for byte).
func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	in := sqstypes.Message{
		MessageId: aws.String("m-1"), ReceiptHandle: aws.String("rh-1"), Body: aws.String(`{"event_id":"x"}`), MD5OfBody: aws.String("abc"),
		Attributes: map[string]string{"ApproximateReceiveCount": "3", "SentTimestamp": "1795917462940"},
		MessageAttributes: map[string]sqstypes.MessageAttributeValue{
			"event_type":  {DataType: aws.String("String"), StringValue: aws.String("order.placed")},
			"schema":      {DataType: aws.String("Number"), StringValue: aws.String("1")},
			"traceparent": {DataType: aws.String("String.w3c"), StringValue: aws.String("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")},
			"blob":        {DataType: aws.String("Binary"), BinaryValue: []byte{0, 1, 2, 0xff}},
		},
	}
	b, err := json.Marshal(events.SQSEvent{Records: []events.SQSMessage{Record(in, "arn:aws:sqs:us-east-1:000000000000:orders-billing", "us-east-1")}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"eventSource":"aws:sqs"`) || !strings.Contains(string(b), `"stringListValues":[]`) {
		t.Errorf("the record is not Lambda's JSON: %s", b)
	}
	var ev events.SQSEvent
	if err := json.Unmarshal(b, &ev); err != nil {
		t.Fatal(err)
	}
	got, want := worker.Received(Message(ev.Records[0])), worker.Received(in)
	if got.ID != want.ID || string(got.Body) != string(want.Body) || got.ReceiptHandle() != "rh-1" || got.ReceiveCount != 3 || !got.SentAt.Equal(want.SentAt) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if diff := cmp.Diff(want.Attributes, got.Attributes); diff != "" {
		t.Errorf("attributes (-want +got):\n%s", diff)
	}
	if blob := Message(ev.Records[0]).MessageAttributes["blob"]; string(blob.BinaryValue) != "\x00\x01\x02\xff" || aws.ToString(blob.DataType) != "Binary" || blob.StringValue != nil {
		t.Errorf("binary attribute = %+v", blob)
	}
}

// TestEventsTheFunctionRefuses: what is neither an SQS batch nor a
// scheduled event is an error (the event source retries the batch), and
// so is a record that is not an SQS message.
func TestEventsTheFunctionRefuses(t *testing.T) {
	t.Parallel()
	h := New(nil) // none of these reaches the function
	for name, payload := range map[string]string{
		"not JSON":            `{"Records": [`,
		"an API Gateway call": `{"httpMethod": "GET", "path": "/"}`,
		"an S3 record":        `{"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put"}]}`,
	} {
		if _, err := h.Handle(context.Background(), json.RawMessage(payload)); err == nil {
			t.Errorf("%s: Handle accepted it", name)
		}
	}
}
