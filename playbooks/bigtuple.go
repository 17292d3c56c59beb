package playbooks

import (
	"bytes"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// bigTupleBytes is how large a list written as an attribute's whole value
// must be for parseHCL to parse its items one by one; tests lower it.
var bigTupleBytes = 64 << 10

// parseHCL parses src as HCL native syntax, the tree and diagnostics being
// those of hclsyntax.ParseConfig. A large list that is an attribute's
// whole value (the nodes of a 10,000-node variables file, 1.3 MB) is parsed
// item by item: HCL lexes a whole file into one slice of tokens grown as it
// goes, which for that file was half the CPU time of validating the
// playbook and 150 MB of garbage. The rest of the file is parsed with the
// list's inside blanked (newlines kept, so every position stays); the items
// are then parsed on their own at their own positions and put in the empty
// list. Anything this does not follow (see tupleItems), and any diagnostic,
// has the whole file parsed the ordinary way.
func (p *Parser) parseHCL(src []byte, filename string) (*hcl.File, hcl.Diagnostics) {
	if f := p.p.Files()[filename]; f != nil {
		return p.p.ParseHCL(src, filename) // the file already parsed, as HCL does
	}
	if f := parseSplit(src, filename); f != nil {
		p.p.AddFile(filename, f)
		return f, nil
	}
	return p.p.ParseHCL(src, filename)
}

// bigTuple is a list parseSplit parses item by item: the offsets of its
// brackets and of each item (from after the bracket or comma before it to
// the comma or bracket after it).
type bigTuple struct {
	open, close int
	items       [][2]int
}

// parseSplit is parseHCL's way for a file with large lists, or nil when the
// file has none or anything is not as it follows.
func parseSplit(src []byte, filename string) *hcl.File {
	tuples := bigTuples(src)
	if len(tuples) == 0 {
		return nil
	}
	blank := bytes.Clone(src)
	for _, t := range tuples {
		for i := t.open + 1; i < t.close; i++ {
			if c := blank[i]; c != '\n' && c != '\r' {
				blank[i] = ' '
			}
		}
	}
	f, diags := hclsyntax.ParseConfig(blank, filename, hcl.Pos{Byte: 0, Line: 1, Column: 1})
	if len(diags) > 0 {
		return nil
	}
	body, ok := f.Body.(*hclsyntax.Body)
	if !ok {
		return nil
	}
	// The attribute whose whole value each list is.
	lists := map[int]*hclsyntax.TupleConsExpr{}
	for _, a := range body.Attributes {
		if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && len(t.Exprs) == 0 {
			lists[t.SrcRange.Start.Byte] = t
		}
	}
	for _, t := range tuples {
		list := lists[t.open]
		if list == nil || list.SrcRange.End.Byte != t.close+1 {
			return nil // not an attribute's whole value: [...][0], [...] == x
		}
		// Positions from the bracket's, which HCL counted: the list's
		// inside is ASCII, so a byte is a column.
		pos, at := list.OpenRange.Start, t.open
		advance := func(to int) {
			for ; at < to; at++ {
				if src[at] == '\n' {
					pos.Line, pos.Column = pos.Line+1, 1
				} else {
					pos.Column++
				}
			}
			pos.Byte = to
		}
		exprs := make([]hclsyntax.Expression, 0, len(t.items))
		for i, it := range t.items {
			chunk := src[it[0]:it[1]]
			if len(bytes.TrimLeft(chunk, " \t\r\n")) == 0 {
				if i == len(t.items)-1 {
					break // after a trailing comma, or an empty list
				}
				return nil
			}
			advance(it[0])
			e, diags := hclsyntax.ParseExpression(chunk, filename, pos)
			if len(diags) > 0 {
				return nil
			}
			exprs = append(exprs, e)
		}
		if len(exprs) > 0 { // HCL leaves an empty list's nil
			list.Exprs = exprs
		}
	}
	f.Bytes = src
	return f
}

// bigTuples finds the lists of src at least bigTupleBytes long that sit at
// the top level (outside any bracket, so an attribute's value, or part of
// it), ASCII inside, with no comment, template or heredoc and nothing
// after them on their closing line, and that are not for expressions.
func bigTuples(src []byte) []bigTuple {
	var out []bigTuple
	depth := 0
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case '#':
			i = lineEnd(src, i)
		case '/':
			if i+1 < len(src) && (src[i+1] == '/' || src[i+1] == '*') {
				return out // comments between attributes: left to HCL
			}
		case '<':
			if i+1 < len(src) && src[i+1] == '<' {
				return out
			}
		case '"':
			end, ok := quotedEnd(src, i+1)
			if !ok {
				return out
			}
			i = end
		case '{', '(':
			depth++
		case '}', ')', ']':
			depth = max(0, depth-1)
		case '[':
			if depth > 0 {
				depth++
				continue
			}
			t, ok := tupleItems(src, i)
			if !ok {
				return out // HCL parses it, and what follows, whole
			}
			if t.close-t.open >= bigTupleBytes {
				out = append(out, t)
			}
			i = t.close
		}
	}
	return out
}

// tupleItems splits the list opening at src[open] into its items, and
// says false for what parseSplit does not follow.
func tupleItems(src []byte, open int) (bigTuple, bool) {
	t := bigTuple{open: open}
	depth, start := 0, open+1
	for i := open + 1; i < len(src); i++ {
		switch c := src[i]; {
		case c >= 0x80:
			return t, false // columns would not be bytes
		case c == '#' || c == '/' && i+1 < len(src) && (src[i+1] == '/' || src[i+1] == '*'):
			return t, false
		case c == '<' && i+1 < len(src) && src[i+1] == '<':
			return t, false
		case c == '"':
			end, ok := quotedEnd(src, i+1)
			if !ok {
				return t, false
			}
			for _, b := range src[i:end] {
				if b >= 0x80 {
					return t, false
				}
			}
			i = end
		case c == '{' || c == '[' || c == '(':
			depth++
		case c == '}' || c == ')' || c == ']' && depth > 0:
			depth--
			if depth < 0 {
				return t, false
			}
		case c == ',' && depth == 0:
			t.items = append(t.items, [2]int{start, i})
			start = i + 1
		case c == ']':
			t.items = append(t.items, [2]int{start, i})
			t.close = i
			// Nothing after the list but its line's end: an index or
			// an operator would make it part of a larger expression.
			rest := bytes.TrimLeft(src[i+1:], " \t")
			if len(rest) > 0 && rest[0] != '\n' && !bytes.HasPrefix(rest, []byte("\r\n")) {
				return t, false
			}
			first := bytes.TrimLeft(src[t.items[0][0]:t.items[0][1]], " \t\r\n")
			if bytes.HasPrefix(first, []byte("for")) && (len(first) == 3 || !isIdentByte(first[3])) {
				return t, false // a for expression, not a list of items
			}
			return t, true
		}
	}
	return t, false
}

func isIdentByte(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
