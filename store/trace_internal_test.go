package store

import "testing"

// TestEffectFunctionNamesEveryCall: the span of every function call the
// handlers make is named after its function; other statements are not.
func TestEffectFunctionNamesEveryCall(t *testing.T) {
	for sql, want := range map[string]string{
		invoiceCall:                  "orderpipe_invoice",
		cancelCall:                   "orderpipe_cancel_invoice",
		reserveCall:                  "orderpipe_reserve",
		releaseCall:                  "orderpipe_release",
		claimCall:                    "orderpipe_claim_email",
		recordCall:                   "orderpipe_record_email",
		"SELECT 1":                   "",
		"INSERT INTO orderpipe_x(a)": "",
		"SELECT status FROM notifications WHERE event_id = $1::uuid": "",
	} {
		got, ok := effectFunction(sql)
		if got != want || ok != (want != "") {
			t.Errorf("effectFunction(%.40q) = %q, %v; want %q", sql, got, ok, want)
		}
	}
}
