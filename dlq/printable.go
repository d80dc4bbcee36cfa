package dlq

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

// Printable returns s fit for an operator's terminal: every character a
// terminal could act on or that would not show is written as a Go escape —
// C0 controls (ESC, and also TAB, CR and LF, which would break a table's
// columns), DEL, C1 controls (a terminal may take U+009B as CSI), format
// characters (bidirectional overrides, zero-width ones), line and paragraph
// separators — and an invalid byte as \xNN. What a dead letter holds comes
// from whoever produced the message; the worker escapes the attributes it
// writes, but not the body, not attributes it copied, and not messages SQS
// moved itself. A backslash already in s is left as it is: the output is
// for reading, not for parsing back.
func Printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !shows(r) }) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case shows(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
		i += size
	}
	return b.String()
}

// PrintableJSON returns encoded JSON with the characters Printable escapes
// written as JSON escapes (\u009b), so it stays valid JSON that decodes to
// the same values. encoding/json escapes C0 controls itself but leaves DEL,
// C1 and format characters as they are, and a json.RawMessage passes
// through untouched, invalid UTF-8 included (written here as \ufffd).
// Newlines and spaces between tokens, as an indenting encoder writes them,
// are kept: in valid JSON no other raw control character can stand outside
// a string.
func PrintableJSON(b []byte) []byte {
	out := make([]byte, 0, len(b))
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		switch {
		case r == '\n' || r == ' ' || (shows(r) && (r != utf8.RuneError || size != 1)):
			out = append(out, b[i:i+size]...)
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			out = fmt.Appendf(out, `\u%04x\u%04x`, r1, r2)
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
		i += size
	}
	return out
}

// shows reports whether r prints as itself: a letter, mark, number,
// punctuation, symbol or space separator (unicode.IsGraphic), U+FFFD
// included.
func shows(r rune) bool {
	return unicode.IsGraphic(r)
}
