package events

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"go.opentelemetry.io/otel/trace"

	"github.com/orderpipe/orderpipe/resilience/retry"
)

// SNSAPI is the part of the SNS client the publisher uses.
type SNSAPI interface {
	PublishBatch(ctx context.Context, in *sns.PublishBatchInput, opts ...func(*sns.Options)) (*sns.PublishBatchOutput, error)
}

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// TopicARN is the topic events go to. Required.
	TopicARN string
	// Concurrency is how many PublishBatch calls run at once. Defaults to 8.
	Concurrency int
	// MaxAttempts bounds the attempts per batch entry, for throttling and
	// server-side failures. Defaults to 5.
	MaxAttempts int
	// TracerProvider, if set, gives every message a producer span and puts
	// its W3C trace context in the message's attributes (AttrTraceParent,
	// AttrTraceState), so the consumers' work joins the publisher's trace.
	// Nil (the default): nothing is traced, no attribute added.
	TracerProvider trace.TracerProvider
}

// Publisher defaults.
const (
	PublisherConcurrencyDefault = 8
	PublisherMaxAttemptsDefault = 5
	maxBatchEntries             = 10 // the SNS limit
)

// Publisher sends events to the topic with PublishBatch, ten at a time,
// retrying the entries SNS failed for reasons of its own.
type Publisher struct {
	client SNSAPI
	cfg    PublisherConfig
	tracer trace.Tracer // nil: tracing off
	topic  string       // the topic's name, for spans
}

// NewPublisher returns a Publisher.
func NewPublisher(client SNSAPI, cfg PublisherConfig) (*Publisher, error) {
	if cfg.TopicARN == "" {
		return nil, errors.New("events: PublisherConfig.TopicARN is required")
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = PublisherConcurrencyDefault
	}
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = PublisherMaxAttemptsDefault
	}
	p := &Publisher{client: client, cfg: cfg, topic: cfg.TopicARN[strings.LastIndex(cfg.TopicARN, ":")+1:]}
	if cfg.TracerProvider != nil {
		p.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	return p, nil
}

// RawMessage is a message as it goes onto the topic. Publishing raw bodies is
// for tools and tests that need to send what the contract forbids.
type RawMessage struct {
	Body          string
	EventType     string // becomes the event_type attribute when set
	SchemaVersion int    // becomes the schema_version attribute when non-zero
	// EventID and OrderID name the event on its publish span, when known.
	EventID, OrderID string
	// TraceContext, when tracing, is the W3C trace context (AttrTraceParent,
	// AttrTraceState) the publish continues, as stored with an outbox row:
	// the compensation joins its order's trace. Empty, the publish
	// continues ctx's span, or starts a trace of its own.
	TraceContext map[string]string
}

// Publish validates, encodes and publishes events. It returns how many were
// accepted by SNS and an error naming the ones that were not.
func (p *Publisher) Publish(ctx context.Context, evs []Event) (int, error) {
	msgs := make([]RawMessage, len(evs))
	for i, ev := range evs {
		body, err := Encode(ev)
		if err != nil {
			return 0, err
		}
		msgs[i] = RawMessage{Body: string(body), EventType: string(ev.EventType), SchemaVersion: ev.SchemaVersion,
			EventID: string(ev.EventID), OrderID: ev.Order.OrderID}
	}
	return p.PublishRaw(ctx, msgs)
}

// PublishRaw publishes messages as they are.
func (p *Publisher) PublishRaw(ctx context.Context, msgs []RawMessage) (int, error) {
	entries := make([]entry, len(msgs))
	for i, m := range msgs {
		entries[i] = p.entry(ctx, m)
	}
	batches := make(chan []entry)
	var (
		mu        sync.Mutex
		published int
		errs      []error
		wg        sync.WaitGroup
	)
	for range p.cfg.Concurrency {
		wg.Go(func() {
			for b := range batches {
				err := p.publishBatch(ctx, b)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					published += len(b)
				}
				mu.Unlock()
			}
		})
	}
	for start := 0; start < len(entries); start += maxBatchEntries {
		end := min(start+maxBatchEntries, len(entries))
		if ctx.Err() == nil {
			select {
			case batches <- entries[start:end]:
				continue
			case <-ctx.Done():
			}
		}
		// Cancelled: nothing from here on is sent.
		mu.Lock()
		errs = append(errs, fmt.Errorf("publish %d messages: %w", len(entries)-start, context.Cause(ctx)))
		mu.Unlock()
		failSpans(entries[start:])
		break
	}
	close(batches)
	wg.Wait()
	return published, errors.Join(errs...)
}

// publishBatch sends up to ten messages, resending only the entries that
// failed on the server's side (throttling, internal errors).
func (p *Publisher) publishBatch(ctx context.Context, msgs []entry) error {
	pending := make(map[string]entry, len(msgs))
	for i, m := range msgs {
		pending[strconv.Itoa(i)] = m
	}
	defer endSpans(msgs, pending)
	err := retry.Do(ctx, retry.Policy{Tries: uint(p.cfg.MaxAttempts)}, nil, func(ctx context.Context) error {
		out, err := p.client.PublishBatch(ctx, p.batchInput(pending))
		if err != nil {
			return fmt.Errorf("sns PublishBatch: %w", err)
		}
		for _, ok := range out.Successful {
			pending[aws.ToString(ok.Id)].sent(aws.ToString(ok.MessageId))
			delete(pending, aws.ToString(ok.Id))
		}
		var failed []error
		for _, f := range out.Failed {
			err := fmt.Errorf("entry %s: %s: %s", aws.ToString(f.Id), aws.ToString(f.Code), aws.ToString(f.Message))
			if f.SenderFault {
				// The request itself is wrong; sending it again cannot help.
				return retry.Stop(err)
			}
			failed = append(failed, err)
		}
		if len(pending) > 0 && len(failed) == 0 {
			return fmt.Errorf("sns PublishBatch: %d entries neither successful nor failed", len(pending))
		}
		return errors.Join(failed...)
	})
	if err != nil {
		return fmt.Errorf("publish %d of %d messages: %w", len(pending), len(msgs), err)
	}
	return nil
}

func (p *Publisher) batchInput(pending map[string]entry) *sns.PublishBatchInput {
	in := &sns.PublishBatchInput{TopicArn: aws.String(p.cfg.TopicARN)}
	for id, m := range pending {
		in.PublishBatchRequestEntries = append(in.PublishBatchRequestEntries, snstypes.PublishBatchRequestEntry{
			Id:                aws.String(id),
			Message:           aws.String(m.msg.Body),
			MessageAttributes: m.attrs,
		})
	}
	return in
}

// messageAttributes are m's attributes: event_type and schema_version when
// set.
func messageAttributes(m RawMessage) map[string]snstypes.MessageAttributeValue {
	attrs := map[string]snstypes.MessageAttributeValue{}
	if m.EventType != "" {
		attrs[AttrEventType] = snstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(m.EventType)}
	}
	if m.SchemaVersion != 0 {
		attrs[AttrSchemaVersion] = snstypes.MessageAttributeValue{DataType: aws.String("Number"), StringValue: aws.String(strconv.Itoa(m.SchemaVersion))}
	}
	return attrs
}
