package playbooks

import (
	"bytes"
	"fmt"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// MaxNestingDepth is how deep brackets, braces, parentheses, strings and
// template sequences may nest, and how many unary operators (! and -) may
// follow each other, in a playbook file. HCL's parser recurses once per
// level: far deeper input overflows the stack, which no diagnostic can
// report, so the file is checked first.
const MaxNestingDepth = 100

// checkNesting reports the first place src nests deeper than
// MaxNestingDepth: from HCL's tokens (the lexer does not recurse), or, for
// JSON, from the bytes outside strings.
func checkNesting(src []byte, filename string, json bool) hcl.Diagnostics {
	if json {
		return checkJSONNesting(src, filename)
	}
	if shallow(src) {
		return nil
	}
	return lexedNesting(src, filename)
}

// lexedNesting is checkNesting from HCL's tokens, which the lexer makes
// without recursing.
func lexedNesting(src []byte, filename string) hcl.Diagnostics {
	tokens, _ := hclsyntax.LexConfig(src, filename, hcl.Pos{Line: 1, Column: 1})
	depth, unary := 0, 0
	for _, t := range tokens {
		switch t.Type {
		case hclsyntax.TokenOBrace, hclsyntax.TokenOBrack, hclsyntax.TokenOParen,
			hclsyntax.TokenOQuote, hclsyntax.TokenOHeredoc,
			hclsyntax.TokenTemplateInterp, hclsyntax.TokenTemplateControl:
			depth++
			if depth > MaxNestingDepth {
				return tooDeep(t.Range, "Brackets, braces, parentheses, strings and templates")
			}
		case hclsyntax.TokenCBrace, hclsyntax.TokenCBrack, hclsyntax.TokenCParen,
			hclsyntax.TokenCQuote, hclsyntax.TokenCHeredoc, hclsyntax.TokenTemplateSeqEnd:
			if depth > 0 {
				depth--
			}
		}
		switch t.Type {
		case hclsyntax.TokenBang, hclsyntax.TokenMinus:
			unary++
			if unary > MaxNestingDepth {
				return tooDeep(t.Range, "Operators")
			}
		case hclsyntax.TokenNewline, hclsyntax.TokenComment:
		default:
			unary = 0
		}
	}
	return nil
}

// shallow reports whether src certainly nests no deeper than
// MaxNestingDepth, from its bytes alone: lexing a 10,000-node variables
// file only to count its brackets cost as much as parsing it, and twice
// its memory. It follows HCL's lexer where that is simple (brackets,
// quoted strings with their escapes, comments) and counts every '!' and
// '-' outside strings as a unary operator, which overcounts (a
// subtraction, a '-' in a name) but never undercounts. It answers false,
// so that the lexer decides and places the diagnostic, on anything it does
// not follow: templates (${ and %{ in a string), heredocs, a newline in a
// string, an unclosed block comment, or a count over the limit.
func shallow(src []byte) bool {
	depth, unary := 0, 0
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case ' ', '\t', '\r', '\n':
			continue
		case '!', '-':
			if unary++; unary > MaxNestingDepth {
				return false
			}
			continue
		case '#':
			i = lineEnd(src, i)
			continue
		case '/':
			if i+1 < len(src) && src[i+1] == '/' {
				i = lineEnd(src, i)
				continue
			}
			if i+1 < len(src) && src[i+1] == '*' {
				end := bytes.Index(src[i+2:], []byte("*/"))
				if end < 0 {
					return false
				}
				i += 2 + end + 1
				continue
			}
		case '<':
			if i+1 < len(src) && src[i+1] == '<' {
				return false // perhaps a heredoc
			}
		case '{', '[', '(':
			if depth++; depth > MaxNestingDepth {
				return false
			}
		case '}', ']', ')':
			if depth > 0 {
				depth--
			}
		case '"':
			if depth+1 > MaxNestingDepth {
				return false
			}
			end, ok := quotedEnd(src, i+1)
			if !ok {
				return false
			}
			i = end
		}
		unary = 0
	}
	return true
}

// lineEnd is the index of the newline ending the line that i is on (or the
// last index), where a # or // comment ends.
func lineEnd(src []byte, i int) int {
	if n := bytes.IndexByte(src[i:], '\n'); n >= 0 {
		return i + n
	}
	return len(src) - 1
}

// quotedEnd is the index of the quote closing the string that starts at i,
// and false for what shallow does not follow: a template sequence, a
// newline, or no closing quote.
func quotedEnd(src []byte, i int) (int, bool) {
	for ; i < len(src); i++ {
		switch src[i] {
		case '"':
			return i, true
		case '\\':
			i++ // the escaped byte, whatever it is
		case '{':
			if p := src[i-1]; p == '$' || p == '%' {
				return 0, false
			}
		case '\n', '\r':
			return 0, false
		}
	}
	return 0, false
}

func checkJSONNesting(src []byte, filename string) hcl.Diagnostics {
	depth, inString, escaped := 0, false, false
	pos := hcl.Pos{Line: 1, Column: 1}
	for i, c := range src {
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case inString && c == '"':
			inString = false
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
			if depth > MaxNestingDepth {
				end := pos
				end.Byte, end.Column = i+1, pos.Column+1
				return tooDeep(hcl.Range{Filename: filename, Start: hcl.Pos{Line: pos.Line, Column: pos.Column, Byte: i}, End: end}, "Brackets and braces")
			}
		case c == '}' || c == ']':
			if depth > 0 {
				depth--
			}
		}
		if c == '\n' {
			pos.Line, pos.Column = pos.Line+1, 1
		} else if c&0xC0 != 0x80 { // count characters, not UTF-8 continuation bytes
			pos.Column++
		}
	}
	return nil
}

func tooDeep(rng hcl.Range, what string) hcl.Diagnostics {
	return hcl.Diagnostics{{
		Severity: hcl.DiagError,
		Summary:  "Nesting too deep",
		Detail:   fmt.Sprintf("%s nest more than %d deep here; a playbook may nest at most %d levels.", what, MaxNestingDepth, MaxNestingDepth),
		Subject:  &rng,
	}}
}
