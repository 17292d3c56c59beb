package playbooks

import (
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
