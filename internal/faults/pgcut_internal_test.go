package faults

import "testing"

// TestWritesIncludeOrderpipesFunctions: the handlers' every write is a call
// of one of orderpipe's functions, so those are writes to cut at commit;
// a read is not.
func TestWritesIncludeOrderpipesFunctions(t *testing.T) {
	for q, want := range map[string]bool{
		"SELECT r_first, r_known, r_number, r_discount FROM orderpipe_invoice($1::text, $2::text)": true,
		"SELECT r_from FROM orderpipe_claim_email($1::text)":                                       true,
		"SELECT orderpipe_record_email($1::text, $2::text)":                                        true,
		"INSERT INTO outbox (id) VALUES ($1)":                                                      true,
		"update products set stock = 0":                                                            true,
		"SELECT status FROM notifications WHERE event_id = $1::uuid":                               false,
		"SELECT 1": false,
	} {
		if got := isWrite(q); got != want {
			t.Errorf("isWrite(%.50q) = %v, want %v", q, got, want)
		}
	}
}
