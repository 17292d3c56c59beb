// Package termtext makes text that came from elsewhere (a plugin, a remote
// host, a database, a journal file) safe to show on a terminal: control
// characters are shown escaped, never sent to the terminal, so an exec's
// stderr or a server's reply cannot move the cursor, erase lines, print a
// fake "run done" over the real output, or retitle the window.
//
// Use it at the output edges, on every string that did not come from
// upshift itself. It imports nothing of the project.
package termtext

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// Line returns s escaped for one line of output: every control character
// (C0 including newline and tab, DEL, C1), the Unicode characters that
// reorder or hide text (bidirectional overrides and isolates, line and
// paragraph separators) and invalid UTF-8 are written as Go escapes
// (\n, \x1b, \u009b, \u202e), and a backslash stays a backslash. Text with
// none of them is returned as it is.
func Line(s string) string { return escape(s, false) }

// Block is Line for text shown as a block of lines (an error with its
// details, a log tail): newline and tab are kept, everything else Line
// escapes is escaped. A carriage return is escaped, so a line cannot be
// overwritten.
func Block(s string) string { return escape(s, true) }

// Lines applies Block to each string of ss, in place, and returns ss.
func Lines(ss []string) []string {
	for i, s := range ss {
		ss[i] = Block(s)
	}
	return ss
}

func unsafe(r rune, block bool) bool {
	switch {
	case block && (r == '\n' || r == '\t'):
		return false
	case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f:
		return true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f, r == 0x061c:
		return true // bidirectional controls
	case r == 0x2028, r == 0x2029:
		return true // line and paragraph separators
	}
	return false
}

func escape(s string, block bool) string {
	clean := true
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if (r == utf8.RuneError && n == 1) || unsafe(r, block) {
			clean = false
			break
		}
		i += n
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && n == 1:
			b.WriteString(`\x`)
			b.WriteString(hex2(s[i]))
		case !unsafe(r, block):
			b.WriteString(s[i : i+n])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			b.WriteString(`\x`)
			b.WriteString(hex2(byte(r)))
		default:
			q := strconv.QuoteRuneToASCII(r) // '\u009b'
			b.WriteString(q[1 : len(q)-1])
		}
		i += n
	}
	return b.String()
}

func hex2(c byte) string {
	const digits = "0123456789abcdef"
	return string([]byte{digits[c>>4], digits[c&0xf]})
}
