package dlq_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/orderpipe/orderpipe/dlq"
)

func TestPrintable(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"plain text stays", "invalid event: invalid_field: order.items[0].quantity", "invalid event: invalid_field: order.items[0].quantity"},
		{"letters beyond ASCII stay", "Zoë Łódź 李 ✓ 🙂", "Zoë Łódź 李 ✓ 🙂"},
		{"ESC sequence", "Ada\x1b[2J\x1b]0;pwned\x07", `Ada\x1b[2J\x1b]0;pwned\x07`},
		{"tabs and newlines would break the columns", "a\tb\r\nc", `a\x09b\x0d\x0ac`},
		{"NUL", "a\x00b", `a\x00b`},
		{"DEL", "a\x7fb", `a\x7fb`},
		{"C1 CSI", "a\u009b31mb", `a\u009b31mb`},
		{"bidirectional override", "abc\u202edcba", `abc\u202edcba`},
		{"zero-width space", "a\u200bb", `a\u200bb`},
		{"line separator", "a\u2028b", `a\u2028b`},
		{"a format character beyond the BMP", "a\U000e0001b", `a\U000e0001b`},
		{"invalid UTF-8", "a\xffb\xc3", `a\xffb\xc3`},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := dlq.Printable(tt.in); got != tt.want {
				t.Errorf("Printable(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// TestPrintableLeavesNoControlCharacter tries every code point.
func TestPrintableLeavesNoControlCharacter(t *testing.T) {
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue // surrogates are not valid in UTF-8
		}
		out := dlq.Printable("x" + string(r) + "y")
		if bad := firstUnshown(out); bad >= 0 {
			t.Fatalf("Printable(U+%04X) = %q: holds U+%04X", r, out, bad)
		}
	}
}

func TestPrintableJSON(t *testing.T) {
	value := map[string]any{
		"error": "bad \x1b[31mred\x1b[0m",
		"csi":   "a\u009b2Jb",
		"del":   "a\x7fb",
		"bidi":  "abc\u202edcba",
		"tag":   "a\U000e0001b",
		"fine":  "Zoë 李 🙂 <&>",
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	if err := enc.Encode(value); err != nil {
		t.Fatal(err)
	}
	out := dlq.PrintableJSON(buf.Bytes())
	if bad := firstUnshown(string(bytes.ReplaceAll(out, []byte("\n"), nil))); bad >= 0 {
		t.Errorf("output holds U+%04X:\n%s", bad, out)
	}
	var back map[string]any
	if err := json.Unmarshal(out, &back); err != nil {
		t.Fatalf("output is not JSON any more: %v\n%s", err, out)
	}
	if d := cmp.Diff(value, back); d != "" {
		t.Errorf("output decodes to other values (-want +got):\n%s", d)
	}

	// A raw body (json.RawMessage) passes encoding/json untouched, invalid
	// UTF-8 included.
	raw := []byte("{\"a\":\"x\u009by\",\"b\":\"\xff\"}")
	out = dlq.PrintableJSON(raw)
	if want := `{"a":"x\u009by","b":"\ufffd"}`; string(out) != want {
		t.Errorf("PrintableJSON(%q) = %s, want %s", raw, out, want)
	}
}

// firstUnshown returns the first rune of s that is not graphic, or is an
// invalid byte, or -1.
func firstUnshown(s string) rune {
	for i, r := range s {
		if r == utf8.RuneError {
			if _, size := utf8.DecodeRuneInString(s[i:]); size == 1 {
				return rune(s[i])
			}
		}
		if !unicode.IsGraphic(r) {
			return r
		}
	}
	return -1
}
