package worker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Dead-lettering copies a message whose handler returned a Permanent error to
// the DLQ. The copy must be accepted by SQS whatever the message holds, because
// a refused copy is retried until SQS itself moves the message after
// maxReceiveCount receives, without a reason. SQS allows at most ten message
// attributes, and a string value may hold only #x9 | #xA | #xD | #x20-#xD7FF |
// #xE000-#xFFFD | #x10000-#x10FFFF. So:
//
//   - The four reason attributes (Config.DLQAttributePrefix + reason, error,
//     source_queue, receive_count) are always there. With tracing on, so
//     is the trace context of the delivery's span (traceparent, and
//     tracestate when it has one: trace.go), in place of the one received:
//     the runtime's own attributes are then five or six.
//   - Incoming attributes are copied with their type (a Binary one stays
//     Binary, byte for byte) while they fit beside the runtime's own: up to
//     six (five or four with tracing on).
//   - With more than fit, one fewer is kept, first the names listed in
//     Config.DeadLetterKeepAttributes (in that order), then the others by
//     name; the rest are folded into one attribute,
//     the prefix + dropped_attributes: a JSON object of name → value in the
//     shape of SQS's JSON API ({"DataType":…,"StringValue":…} or
//     "BinaryValue": base64), which DroppedAttributes turns back into
//     attributes for a redrive. The JSON keeps the values exact.
//   - Every string value written into an attribute is cleaned (cleanAttr):
//     control characters (C0 but TAB, LF and CR; DEL; C1) and what SQS rejects
//     are escaped as visible text (\x1b), invalid UTF-8 becomes U+FFFD. The
//     error text may carry attacker-controlled input, and these values end up
//     on an operator's terminal. The runtime's own values
//     are capped at maxDLQValueLen bytes, cut on a rune boundary.
//   - If SQS still refuses the copy for what it holds (unsendable: too large,
//     say), it is sent once more with the body and the four reason
//     attributes only, and the names of the attributes left out are logged.

// DLQAttributePrefixDefault is the prefix of the attributes the runtime
// sets on a dead-lettered message (Config.DLQAttributePrefix).
const DLQAttributePrefixDefault = "orderpipe_dlq_"

// Attributes the runtime sets on a dead-lettered message, with the default
// prefix.
const (
	AttrDLQReason       = DLQAttributePrefixDefault + "reason"
	AttrDLQError        = DLQAttributePrefixDefault + "error"
	AttrDLQSourceQueue  = DLQAttributePrefixDefault + "source_queue"
	AttrDLQReceiveCount = DLQAttributePrefixDefault + "receive_count"
	// AttrDLQDroppedAttributes holds, as JSON, the incoming attributes that
	// did not fit beside the others; see DroppedAttributes.
	AttrDLQDroppedAttributes = DLQAttributePrefixDefault + "dropped_attributes"
)

// DLQAttributeNames are the names of the attributes the runtime sets on a
// dead-lettered message.
type DLQAttributeNames struct {
	Reason, Error, SourceQueue, ReceiveCount, Dropped string
}

// DLQAttributesFor returns the names with prefix.
func DLQAttributesFor(prefix string) DLQAttributeNames {
	return DLQAttributeNames{
		Reason: prefix + "reason", Error: prefix + "error", SourceQueue: prefix + "source_queue",
		ReceiveCount: prefix + "receive_count", Dropped: prefix + "dropped_attributes",
	}
}

const (
	maxMessageAttributes = 10   // the SQS limit
	maxDLQValueLen       = 1024 // cap on each value the runtime writes itself
)

// deadLetter copies the message to the DLQ with the reason, then deletes it.
// If the copy fails, the message is retried instead: never lost.
func (c *Consumer) deadLetter(ctx context.Context, m *Message, reason string, cause error, log *slog.Logger) {
	incoming := m.sqsAttributes()
	own := c.dlqAttributes(m, reason, cause)
	c.injectTrace(ctx, own) // traceparent (and tracestate) count among the runtime's own
	attrs, folded := fitAttributes(incoming, own, c.cfg.DeadLetterKeepAttributes, c.dlqNames.Dropped)
	err := c.sendToDLQ(ctx, m, attrs)
	if err != nil && unsendable(err) {
		log.Warn("the DLQ refused the copy; sending it again with the body and the runtime's reason attributes only",
			"err", err, "dropped_attributes", slices.Sorted(maps.Keys(incoming)))
		err = c.sendToDLQ(ctx, m, own)
	}
	if err != nil {
		c.retry(ctx, m, fmt.Errorf("dead-letter (%s): %w", reason, err), log)
		return
	}
	c.cfg.Observer.DeadLettered(reason)
	log.Warn("message dead-lettered", "reason", reason, "err", cause, "folded_attributes", folded)
	c.ack(m)
}

func (c *Consumer) sendToDLQ(ctx context.Context, m *Message, attrs map[string]sqstypes.MessageAttributeValue) error {
	_, err := c.client.SendMessage(ctx, &sqs.SendMessageInput{
		QueueUrl:          aws.String(c.cfg.DLQURL),
		MessageBody:       aws.String(string(m.Body)),
		MessageAttributes: attrs,
	})
	if err != nil {
		return fmt.Errorf("send %s to %s: %w", m.ID, c.cfg.DLQURL, err)
	}
	return nil
}

// dlqAttributes returns the runtime's own attributes for a dead-lettered m.
func (c *Consumer) dlqAttributes(m *Message, reason string, cause error) map[string]sqstypes.MessageAttributeValue {
	return map[string]sqstypes.MessageAttributeValue{
		c.dlqNames.Reason:       stringAttr(cleanAttr(reason, maxDLQValueLen)),
		c.dlqNames.Error:        stringAttr(cleanAttr(cause.Error(), maxDLQValueLen)),
		c.dlqNames.SourceQueue:  stringAttr(cleanAttr(c.cfg.QueueURL, maxDLQValueLen)),
		c.dlqNames.ReceiveCount: stringAttr(strconv.Itoa(m.ReceiveCount)),
	}
}

// fitAttributes returns own plus as many incoming attributes as SQS allows
// beside them, the rest folded into the attribute named dropped, and the
// names it folded. Incoming attributes named like one of the runtime's are
// replaced.
func fitAttributes(incoming, own map[string]sqstypes.MessageAttributeValue, keepFirst []string, dropped string) (map[string]sqstypes.MessageAttributeValue, []string) {
	out := maps.Clone(own)
	names := attributeOrder(incoming, own, keepFirst, dropped)
	room := maxMessageAttributes - len(own)
	if len(names) > room {
		room-- // one goes to the fold
	}
	var folded []string
	fold := map[string]foldedValue{}
	for i, name := range names {
		v := incoming[name]
		if i < room {
			out[name] = cleanValue(v)
			continue
		}
		folded = append(folded, name)
		fold[name] = foldedValue{DataType: aws.ToString(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue}
	}
	if len(fold) > 0 {
		out[dropped] = stringAttr(encodeFold(fold))
	}
	return out, folded
}

// attributeOrder lists the incoming names to copy: those in keepFirst, in
// that order, then the others sorted, so what is kept is deterministic.
func attributeOrder(incoming, own map[string]sqstypes.MessageAttributeValue, keepFirst []string, dropped string) []string {
	reserved := func(name string) bool { _, ok := own[name]; return ok || name == dropped }
	names := make([]string, 0, len(incoming))
	for _, name := range keepFirst {
		if _, ok := incoming[name]; ok && !reserved(name) && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	first := len(names)
	for _, name := range slices.Sorted(maps.Keys(incoming)) {
		if !reserved(name) && !slices.Contains(names[:first], name) {
			names = append(names, name)
		}
	}
	return names
}

// cleanValue returns v fit to send: Binary values as they are (SQS puts no
// character rule on them), string and number values cleaned.
func cleanValue(v sqstypes.MessageAttributeValue) sqstypes.MessageAttributeValue {
	if strings.HasPrefix(aws.ToString(v.DataType), "Binary") {
		return sqstypes.MessageAttributeValue{DataType: v.DataType, BinaryValue: v.BinaryValue}
	}
	s := cleanAttr(aws.ToString(v.StringValue), 0)
	if s == "" {
		s = "-" // SQS rejects empty attribute values
	}
	dataType := v.DataType
	if dataType == nil {
		dataType = aws.String("String")
	}
	return sqstypes.MessageAttributeValue{DataType: dataType, StringValue: aws.String(s)}
}

// foldedValue is one folded attribute, in the shape of SQS's JSON API.
//
//nolint:tagliatelle // SQS's MessageAttributeValue names, so the fold reads as SQS's own JSON
type foldedValue struct {
	DataType    string  `json:"DataType"`
	StringValue *string `json:"StringValue,omitempty"`
	BinaryValue []byte  `json:"BinaryValue,omitempty"`
}

// encodeFold returns the JSON of fold (keys sorted), with the characters
// encoding/json leaves as they are but SQS or a terminal would not take (DEL,
// C1, U+FFFE, U+FFFF) escaped the JSON way, so decoding gives the exact values.
func encodeFold(fold map[string]foldedValue) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(fold) //nolint:errchkjson // cannot fail: strings and bytes, into a bytes.Buffer
	var b strings.Builder
	for _, r := range strings.TrimSuffix(buf.String(), "\n") {
		if isControl(r) || !sqsAllowed(r) {
			fmt.Fprintf(&b, `\u%04x`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// DroppedAttributes returns the attributes folded into the value of a
// dead-lettered message's AttrDLQDroppedAttributes, as they came, for a
// redrive to restore.
func DroppedAttributes(value string) (map[string]sqstypes.MessageAttributeValue, error) {
	var fold map[string]foldedValue
	if err := json.Unmarshal([]byte(value), &fold); err != nil {
		return nil, fmt.Errorf("decode %s: %w", AttrDLQDroppedAttributes, err)
	}
	out := make(map[string]sqstypes.MessageAttributeValue, len(fold))
	for name, v := range fold {
		out[name] = sqstypes.MessageAttributeValue{DataType: aws.String(v.DataType), StringValue: v.StringValue, BinaryValue: v.BinaryValue}
	}
	return out, nil
}

// unsendable reports whether SQS refused a SendMessage for what the message
// holds, so that sending it unchanged can never succeed:
// InvalidMessageContents (a character outside the allowed set),
// InvalidAttributeValue and InvalidAttributeName (modelled in
// service/sqs/types), and InvalidParameterValue, which the SDK does not model
// but SQS returns for more than ten attributes, an empty or badly typed
// attribute, and a message over the size limit. Codes may come prefixed
// "AWS.SimpleQueueService." (the query-compatible form).
func unsendable(err error) bool {
	var coded interface{ ErrorCode() string }
	if !errors.As(err, &coded) {
		return false
	}
	switch strings.TrimPrefix(coded.ErrorCode(), "AWS.SimpleQueueService.") {
	case "InvalidMessageContents", "InvalidAttributeValue", "InvalidAttributeName", "InvalidParameterValue":
		return true
	}
	return false
}

// cleanAttr returns s fit for an attribute value that ends up on a terminal:
// control characters and those SQS rejects are escaped as visible text (\x1b,
// \ufffe), invalid UTF-8 becomes U+FFFD. With limit > 0 the result is at most
// limit bytes, cut on a rune boundary and marked with "…".
func cleanAttr(s string, limit int) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == utf8.RuneError && size == 1:
			b.WriteRune(utf8.RuneError)
		case isControl(r) || !sqsAllowed(r):
			if r < 0x100 {
				fmt.Fprintf(&b, `\x%02x`, r)
			} else {
				fmt.Fprintf(&b, `\u%04x`, r)
			}
		default:
			b.WriteRune(r)
		}
	}
	out := b.String()
	if limit <= 0 || len(out) <= limit {
		return out
	}
	const ellipsis = "…"
	cut := limit - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}

// isControl reports whether r is a C0 control other than TAB, LF and CR, DEL
// or a C1 control.
func isControl(r rune) bool {
	return (r < 0x20 && r != '\t' && r != '\n' && r != '\r') || (r >= 0x7f && r <= 0x9f)
}

// sqsAllowed reports whether SQS accepts r in a message body or string value.
func sqsAllowed(r rune) bool {
	return r == '\t' || r == '\n' || r == '\r' ||
		(r >= 0x20 && r <= 0xd7ff) || (r >= 0xe000 && r <= 0xfffd) || (r >= 0x10000 && r <= 0x10ffff)
}

func stringAttr(v string) sqstypes.MessageAttributeValue {
	if v == "" {
		v = "-" // SQS rejects empty attribute values
	}
	return sqstypes.MessageAttributeValue{DataType: aws.String("String"), StringValue: aws.String(v)}
}
