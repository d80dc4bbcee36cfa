// Package lambdafn is orderpipe's AWS Lambda entry point: the aws-lambda-go
// handler that cmd/lambda starts (the provided.al2023 bootstrap) and the
// test harness (internal/lambdaharness) invokes through the same
// interface. It turns an SQS event source mapping's batch back into the
// worker runtime's messages, runs them through app.Function (the worker's
// own chain) and answers with a partial batch response: the records that
// failed, by message id, and nothing else (ReportBatchItemFailures).
//
// It also takes a scheduled EventBridge event (source aws.events): the
// inventory function then relays the outbox, the safety net for
// compensations an invocation could not publish.
package lambdafn

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/orderpipe/orderpipe/internal/app"
	"github.com/orderpipe/orderpipe/worker"
)

// Handler serves one function's invocations.
type Handler struct {
	fn *app.Function
}

// New returns the handler of fn, built once per execution environment.
func New(fn *app.Function) *Handler { return &Handler{fn: fn} }

// Lambda is the handler as aws-lambda-go's lambda.Handler: what
// lambda.StartHandler serves and what the harness invokes.
func (h *Handler) Lambda() lambda.Handler { return lambda.NewHandler(h.Handle) }

// event is what a function is invoked with: an SQS batch (Records), or a
// scheduled event (source, detail-type).
type event struct {
	Records    []events.SQSMessage `json:"Records"` //nolint:tagliatelle // AWS's field names
	Source     string              `json:"source"`
	DetailType string              `json:"detail-type"` //nolint:tagliatelle // AWS's field names
}

// Event sources.
const (
	sourceSQS      = "aws:sqs"
	sourceSchedule = "aws.events"
)

// ScheduleResult answers a scheduled invocation.
type ScheduleResult struct {
	Published int `json:"published"`
}

// Handle serves one invocation. An SQS batch gets its partial batch
// response; a scheduled event relays the outbox. Anything else is an error
// (a misconfigured trigger), and so is an SQS record the function cannot
// read: the whole batch is then retried, as the event source does with an
// error.
func (h *Handler) Handle(ctx context.Context, payload json.RawMessage) (any, error) {
	var ev event
	if err := json.Unmarshal(payload, &ev); err != nil {
		return nil, fmt.Errorf("lambdafn: the invocation's event is not JSON: %w", err)
	}
	switch {
	case len(ev.Records) > 0:
		return h.batch(ctx, ev.Records)
	case ev.Source == sourceSchedule:
		return ScheduleResult{Published: h.fn.Relay(ctx)}, nil
	}
	return nil, errors.New("lambdafn: the event is neither an SQS batch nor a scheduled event")
}

func (h *Handler) batch(ctx context.Context, records []events.SQSMessage) (events.SQSEventResponse, error) {
	msgs := make([]*worker.Message, len(records))
	for i, r := range records {
		if r.EventSource != sourceSQS || r.MessageId == "" || r.ReceiptHandle == "" {
			return events.SQSEventResponse{}, fmt.Errorf("lambdafn: record %d is not an SQS message (eventSource %q)", i, r.EventSource)
		}
		msgs[i] = worker.Received(Message(r))
	}
	failed := h.fn.Handle(ctx, msgs)
	resp := events.SQSEventResponse{BatchItemFailures: make([]events.SQSBatchItemFailure, len(failed))}
	for i, m := range failed {
		resp.BatchItemFailures[i] = events.SQSBatchItemFailure{ItemIdentifier: m.ID}
	}
	return resp, nil
}

// Message is an event source mapping's record in the shape of SQS's own
// ReceiveMessage: the system attributes (ApproximateReceiveCount,
// SentTimestamp...) and the message attributes with their types.
func Message(r events.SQSMessage) sqstypes.Message {
	m := sqstypes.Message{
		MessageId: aws.String(r.MessageId), ReceiptHandle: aws.String(r.ReceiptHandle), Body: aws.String(r.Body),
		MD5OfBody: aws.String(r.Md5OfBody), Attributes: r.Attributes,
		MessageAttributes: make(map[string]sqstypes.MessageAttributeValue, len(r.MessageAttributes)),
	}
	if r.Md5OfMessageAttributes != "" {
		m.MD5OfMessageAttributes = aws.String(r.Md5OfMessageAttributes)
	}
	for name, a := range r.MessageAttributes {
		v := sqstypes.MessageAttributeValue{DataType: aws.String(a.DataType), StringListValues: a.StringListValues, BinaryListValues: a.BinaryListValues}
		if strings.HasPrefix(a.DataType, "Binary") {
			v.BinaryValue = a.BinaryValue
		} else {
			v.StringValue = a.StringValue
		}
		m.MessageAttributes[name] = v
	}
	return m
}

// Record is an SQS message as an event source mapping hands it to the
// function (the inverse of Message), for queueARN in region: what the
// harness builds from a receive.
func Record(m sqstypes.Message, queueARN, region string) events.SQSMessage {
	r := events.SQSMessage{
		MessageId: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Md5OfBody: aws.ToString(m.MD5OfBody), Md5OfMessageAttributes: aws.ToString(m.MD5OfMessageAttributes),
		Attributes: m.Attributes, MessageAttributes: make(map[string]events.SQSMessageAttribute, len(m.MessageAttributes)),
		EventSourceARN: queueARN, EventSource: sourceSQS, AWSRegion: region,
	}
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	for name, v := range m.MessageAttributes {
		r.MessageAttributes[name] = events.SQSMessageAttribute{
			DataType: aws.ToString(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue,
			StringListValues: nonNil(v.StringListValues), BinaryListValues: nonNilBytes(v.BinaryListValues),
		}
	}
	return r
}

// The event source writes empty lists, never null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func nonNilBytes(s [][]byte) [][]byte {
	if s == nil {
		return [][]byte{}
	}
	return s
}
