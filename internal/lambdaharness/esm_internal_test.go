package lambdaharness

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// TestPartialBatchResponses: what the event source makes of a function's
// answer, as AWS documents it: null or an empty list deletes the whole
// batch; named records are kept; an identifier that is empty or not in the
// batch fails the whole batch.
func TestPartialBatchResponses(t *testing.T) {
	t.Parallel()
	batch := []sqstypes.Message{{MessageId: aws.String("a")}, {MessageId: aws.String("b")}}
	for _, tc := range []struct {
		name    string
		out     string
		keep    int
		invalid bool
	}{
		{"null", `null`, 0, false},
		{"empty", ``, 0, false},
		{"no failures", `{"batchItemFailures":[]}`, 0, false},
		{"one failure", `{"batchItemFailures":[{"itemIdentifier":"b"}]}`, 1, false},
		{"an empty identifier", `{"batchItemFailures":[{"itemIdentifier":""}]}`, 0, true},
		{"an identifier not in the batch", `{"batchItemFailures":[{"itemIdentifier":"zzz"}]}`, 0, true},
		{"not JSON", `{"batchItemFailures":`, 0, true},
	} {
		keep, err := failures([]byte(tc.out), batch)
		if (err != nil) != tc.invalid || len(keep) != tc.keep {
			t.Errorf("%s: kept %v, err %v; want %d kept, invalid %v", tc.name, keep, err, tc.keep, tc.invalid)
		}
	}
}
