package sqsfake

import (
	"context"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// SQS's limits on a message.
const (
	MaxAttributes  = 10
	MaxMessageSize = 262144 // bytes: body, and each attribute's name, type and value
)

// SendMessage implements worker.SQSAPI. It refuses what SQS refuses, with
// SQS's errors: InvalidMessageContents for a body with a character outside
// the allowed set, InvalidParameterValue for the rest (too many attributes, a
// bad name, type or value, too large).
func (f *Fake) SendMessage(ctx context.Context, in *sqs.SendMessageInput, _ ...func(*sqs.Options)) (*sqs.SendMessageOutput, error) {
	out, err := f.send(ctx, in)
	f.record(OpSend, in, out, err)
	return out, err
}

func (f *Fake) send(ctx context.Context, in *sqs.SendMessageInput) (*sqs.SendMessageOutput, error) {
	if err := f.before(ctx, OpSend, in); err != nil {
		return nil, err
	}
	if err := Check(aws.ToString(in.MessageBody), in.MessageAttributes); err != nil {
		return nil, err
	}
	f.mu.Lock()
	_, err := f.queueLocked(in.QueueUrl)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	id := f.Put(aws.ToString(in.QueueUrl), Message{Body: aws.ToString(in.MessageBody), Attributes: in.MessageAttributes})
	return &sqs.SendMessageOutput{MessageId: aws.String(id)}, nil
}

// Check applies SQS's rules to a message about to be sent.
func Check(body string, attrs map[string]sqstypes.MessageAttributeValue) error {
	if body == "" {
		return invalidParameter("The request must contain the parameter MessageBody.")
	}
	if !validText(body) {
		return &sqstypes.InvalidMessageContents{Message: aws.String("Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")}
	}
	if len(attrs) > MaxAttributes {
		return invalidParameter("Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), MaxAttributes)
	}
	size := len(body)
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		n, err := checkAttribute(name, attrs[name])
		if err != nil {
			return err
		}
		size += n
	}
	if size > MaxMessageSize {
		return invalidParameter("One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", MaxMessageSize)
	}
	return nil
}

var attrName = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)

// checkAttribute applies SQS's rules to one attribute and returns its size.
func checkAttribute(name string, v sqstypes.MessageAttributeValue) (int, error) {
	lower := strings.ToLower(name)
	if !attrName.MatchString(name) || strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") ||
		strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
		return 0, invalidParameter("Message (user) attribute name '%s' is invalid.", name)
	}
	dataType := aws.ToString(v.DataType)
	switch {
	case strings.HasPrefix(dataType, "Binary"):
		if len(v.BinaryValue) == 0 {
			return 0, invalidParameter("Message (user) attribute '%s' must contain a non-empty value of type 'Binary'.", name)
		}
		return len(name) + len(dataType) + len(v.BinaryValue), nil
	case strings.HasPrefix(dataType, "String"), strings.HasPrefix(dataType, "Number"):
		s := aws.ToString(v.StringValue)
		if s == "" {
			return 0, invalidParameter("Message (user) attribute '%s' must contain a non-empty value of type '%s'.", name, dataType)
		}
		if !validText(s) {
			return 0, invalidParameter("Message (user) attribute '%s' value contains invalid characters.", name)
		}
		return len(name) + len(dataType) + len(s), nil
	}
	return 0, invalidParameter("The type of message (user) attribute '%s' is invalid. You must use only the following supported type prefixes: Binary, Number, String.", name)
}

// validText reports whether s is valid UTF-8 holding only the characters SQS
// allows: #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF.
func validText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		ok := r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0xd7ff) ||
			(r >= 0xe000 && r <= 0xfffd) || (r >= 0x10000 && r <= 0x10ffff)
		if !ok {
			return false
		}
	}
	return true
}
