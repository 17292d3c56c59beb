package termtext

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLineAndBlock(t *testing.T) {
	for _, tc := range []struct{ in, line, block string }{
		{"plain text, ünïcödé", "plain text, ünïcödé", "plain text, ünïcödé"},
		{"two\nlines\tand tab", `two\nlines\tand tab`, "two\nlines\tand tab"},
		// A fake "run done" over the real line, and a window title.
		{"oops\r[ 9.9s] run done\x1b]0;owned\x07", `oops\r[ 9.9s] run done\x1b]0;owned\x07`, `oops\r[ 9.9s] run done\x1b]0;owned\x07`},
		{"\x1b[2J\x1b[H", `\x1b[2J\x1b[H`, `\x1b[2J\x1b[H`},
		{"c1 \u009b31m and \u0085", `c1 \u009b31m and \u0085`, `c1 \u009b31m and \u0085`},
		{"del\x7f nul\x00", `del\x7f nul\x00`, `del\x7f nul\x00`},
		{"bidi \u202eevil\u202c", `bidi \u202eevil\u202c`, `bidi \u202eevil\u202c`},
		{"bad utf8 \xff\xfe", `bad utf8 \xff\xfe`, `bad utf8 \xff\xfe`},
		{"", "", ""},
	} {
		assert.Equal(t, tc.line, Line(tc.in), "Line(%q)", tc.in)
		assert.Equal(t, tc.block, Block(tc.in), "Block(%q)", tc.in)
	}
}

// Whatever the input, the output holds no byte a terminal acts on (other
// than newline and tab in a block) and is valid UTF-8.
func FuzzNoControlOut(f *testing.F) {
	f.Add("\x1b[31mred\r\n\u009b\xff")
	f.Fuzz(func(t *testing.T, s string) {
		for _, out := range []string{Line(s), Block(s)} {
			for _, r := range out {
				assert.False(t, unsafe(r, true), "%q leaked %U", s, r)
				assert.NotEqual(t, '\uFFFD', r, "%q", s)
			}
		}
		for _, r := range Line(s) {
			assert.NotContains(t, "\n\t", string(r))
		}
	})
}
