// Package doctest keeps the documentation from rotting: its tests take every
// ```hcl block of README.md and docs/**/*.md, and every .hcl file a shell
// block writes with a here-document (the tutorial's variables file), and
// load it with the project's own parser (package playbooks) against the
// kinds' standard contracts, and
// cmd/upshift's docs_test.go parses every `upshift ...` command line the
// docs show with the CLI's own flag parser. Both run in `make test`.
//
// How an ```hcl block is checked depends on what it is:
//
//   - A variables file (top-level attributes only, other than `cluster`) is
//     given to the shipped playbook, playbooks/rolling-upgrade, as a
//     -var-file: it must load, build a graph and a plan.
//   - A playbook or part of one (top-level blocks a playbook may hold) is
//     loaded as a playbook. What it refers to but does not declare (var.X,
//     local.X, a resource, step.X) is taken from the shipped playbook, with
//     the values of playbooks/testdata/three-nodes.vars.hcl, so a fragment
//     such as one rollout is checked in the context the docs write it for.
//     It must load (references, action names and arguments against the
//     standard contracts), build a graph and a plan.
//   - A lock file (plugin blocks holding a sha256) is read as upshift reads
//     upshift.lock.hcl (host.ReadLockFile).
//   - Anything else (the inside of a block, such as a `with { ... }`) is
//     parsed as HCL syntax only.
//
// Besides: every relative link and #anchor of those pages must lead to an
// existing file and heading (TestDocsLinks), and the hand-written lists of
// each kind's standard actions must name all of them
// (TestDocsListStandardActions).
//
// A block that is deliberately not a playbook is marked, on the line just
// before its fence, with an HTML comment the rendered page does not show:
//
//	<!-- doctest: syntax-only REASON -->   parsed as HCL syntax only (a lock file)
//	<!-- doctest: skip REASON -->          not checked at all
//
// The reason is required. Use them sparingly: a marked block can rot.
package doctest

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
)

// Fence is one fenced code block of a Markdown file.
type Fence struct {
	File string // path as given to Fences
	Line int    // line of the opening fence (1-based); the code starts on the next
	Lang string // the info string's first word: hcl, sh, go, ...
	Code string
	// Directive is "skip" or "syntax-only" when the line before the fence
	// is a doctest marker, with Reason its text.
	Directive, Reason string
}

// Pos names the line of the document that holds line n (1-based) of the
// block's code.
func (f Fence) Pos(n int) string { return fmt.Sprintf("%s:%d", f.File, f.Line+n) }

var (
	fenceRE     = regexp.MustCompile("^( {0,3})(```+|~~~+)\\s*([^`\\s]*)")
	directiveRE = regexp.MustCompile(`^\s*<!--\s*doctest:\s*(skip|syntax-only)\b\s*(.*?)\s*-->\s*$`)
	anyDirRE    = regexp.MustCompile(`<!--\s*doctest:`)
)

// DocFiles lists README.md and every .md file under docs/ of the
// repository at root, sorted.
func DocFiles(root string) ([]string, error) {
	files := []string{filepath.Join(root, "README.md")}
	err := filepath.WalkDir(filepath.Join(root, "docs"), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".md") {
			files = append(files, p)
		}
		return nil
	})
	sort.Strings(files[1:])
	return files, err
}

// Fences returns the fenced code blocks of a Markdown file. A doctest
// marker that is malformed (no reason, unknown word) is an error, so a typo
// does not silently check a block that was meant to be skipped or the
// reverse.
func Fences(path string) ([]Fence, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var (
		out     []Fence
		cur     *Fence
		closer  string
		code    strings.Builder
		prev    string
		lineNum int
	)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		lineNum++
		if cur != nil {
			if strings.HasPrefix(strings.TrimSpace(line), closer) && strings.Trim(strings.TrimSpace(line), closer[:1]) == "" {
				cur.Code = code.String()
				out = append(out, *cur)
				cur = nil
			} else {
				code.WriteString(line)
				code.WriteByte('\n')
			}
			continue
		}
		if m := fenceRE.FindStringSubmatch(line); m != nil {
			cur = &Fence{File: path, Line: lineNum, Lang: strings.ToLower(m[3])}
			closer = m[2]
			code.Reset()
			if anyDirRE.MatchString(prev) {
				d := directiveRE.FindStringSubmatch(prev)
				if d == nil || d[2] == "" {
					return nil, fmt.Errorf("%s:%d: malformed doctest marker %q: want <!-- doctest: skip|syntax-only REASON -->", path, lineNum-1, strings.TrimSpace(prev))
				}
				cur.Directive, cur.Reason = d[1], d[2]
			}
		}
		prev = line
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: code block never closed", path, cur.Line)
	}
	return out, sc.Err()
}

var heredocRE = regexp.MustCompile(`^\s*cat\s+>\s*(\S+\.hcl)\s+<<-?\s*'?"?(\w+)'?"?\s*$`)

// HCLFences returns the HCL a Markdown file shows: its ```hcl blocks, and
// the files its shell blocks write with a here-document
// (cat > cluster.vars.hcl <<'EOF' ... EOF), as a reader would create them,
// each as a Fence of language hcl whose Line is the line before the
// here-document's first line. A marker before a shell block applies to its
// here-documents.
func HCLFences(path string) ([]Fence, error) {
	fences, err := Fences(path)
	if err != nil {
		return nil, err
	}
	var out []Fence
	for _, f := range fences {
		if f.Lang == "hcl" {
			out = append(out, f)
			continue
		}
		if !shellLangs[f.Lang] {
			continue
		}
		lines := strings.Split(f.Code, "\n")
		for i := 0; i < len(lines); i++ {
			m := heredocRE.FindStringSubmatch(lines[i])
			if m == nil {
				continue
			}
			start := i
			var body []string
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != m[2]; i++ {
				body = append(body, lines[i])
			}
			out = append(out, Fence{File: f.File, Line: f.Line + start + 1, Lang: "hcl",
				Code: strings.Join(body, "\n") + "\n", Directive: f.Directive, Reason: f.Reason})
		}
	}
	return out, nil
}

// Command is an `upshift ...` command line shown in a document.
type Command struct {
	Pos  string   // file:line
	Text string   // as written
	Args []string // the arguments after "upshift", placeholders removed
	// Inline is true for a command quoted in running text (`upshift plan`),
	// which often leaves out its arguments: only its command and flags are
	// checked, not the number of arguments.
	Inline bool
}

var inlineRE = regexp.MustCompile("`([^`\n]+)`")

// shellLangs are the fenced blocks whose lines are commands.
var shellLangs = map[string]bool{"": true, "sh": true, "bash": true, "shell": true, "console": true}

// Commands returns the upshift command lines of a Markdown file: every
// line of a shell (or untagged) code block that runs upshift, and every
// inline code span that does.
func Commands(path string) ([]Command, error) {
	fences, err := Fences(path)
	if err != nil {
		return nil, err
	}
	var out []Command
	for _, f := range fences {
		if !shellLangs[f.Lang] || f.Directive == "skip" {
			continue
		}
		lines := strings.Split(f.Code, "\n")
		for i := 0; i < len(lines); i++ {
			n := i + 1
			line := lines[i]
			for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
				i++
				line = strings.TrimSuffix(line, "\\") + " " + lines[i]
			}
			for _, seg := range segments(line) {
				if args, ok := upshiftArgs(seg); ok {
					out = append(out, Command{Pos: f.Pos(n), Text: strings.TrimSpace(seg), Args: args})
				}
			}
		}
	}
	// Inline spans, outside code blocks.
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	inFence := false
	for i, line := range strings.Split(string(b), "\n") {
		if fenceRE.MatchString(line) {
			inFence = !inFence
			continue
		}
		if inFence {
			continue
		}
		for _, m := range inlineRE.FindAllStringSubmatch(line, -1) {
			for _, seg := range segments(m[1]) {
				if args, ok := upshiftArgs(seg); ok {
					out = append(out, Command{Pos: fmt.Sprintf("%s:%d", path, i+1), Text: strings.TrimSpace(seg), Args: args, Inline: true})
				}
			}
		}
	}
	return out, nil
}

// segments splits a shell line at |, ;, && and || outside quotes, and
// drops a # comment and redirections.
func segments(line string) []string {
	var (
		out   []string
		cur   strings.Builder
		quote rune
	)
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote = r
			cur.WriteRune(r)
		case r == '#' && (i == 0 || rs[i-1] == ' ' || rs[i-1] == '\t'):
			i = len(rs)
		case r == '|' || r == ';' || r == '&':
			out = append(out, cur.String())
			cur.Reset()
			for i+1 < len(rs) && (rs[i+1] == '|' || rs[i+1] == '&') {
				i++
			}
		default:
			cur.WriteRune(r)
		}
	}
	return append(out, cur.String())
}

// upshiftArgs splits a command into words and returns those after upshift
// when the command runs upshift (upshift, bin/upshift, ./bin/upshift,
// $BIN/upshift, after VAR=value assignments, sudo or a "$ " prompt).
// Placeholders are made parseable: [--json] is --json, [PATH...] and ...
// are dropped; a redirection ends the command.
func upshiftArgs(s string) ([]string, bool) {
	words, ok := shellWords(strings.TrimSpace(s))
	if !ok || len(words) == 0 {
		return nil, false
	}
	i := 0
	for i < len(words) && (words[i] == "$" || words[i] == "sudo" || words[i] == "env" || isAssignment(words[i])) {
		i++
	}
	if i >= len(words) || !isUpshift(words[i]) {
		return nil, false
	}
	var args []string
	for _, w := range words[i+1:] {
		if strings.HasPrefix(w, ">") || strings.HasPrefix(w, "<") || strings.HasPrefix(w, "2>") {
			break
		}
		if strings.HasPrefix(w, "[") && strings.HasSuffix(w, "]") {
			w = strings.TrimSuffix(strings.TrimPrefix(w, "["), "]")
		}
		if strings.Contains(w, "...") || strings.Contains(w, "…") || w == "" {
			continue
		}
		args = append(args, w)
	}
	return args, true
}

// isUpshift: upshift, bin/upshift, ./bin/upshift, /usr/local/bin/upshift,
// $BIN/upshift; not cmd/upshift (a folder in a listing).
func isUpshift(w string) bool {
	return w == "upshift" || strings.HasSuffix(w, "bin/upshift") ||
		(strings.HasPrefix(w, "$") && strings.HasSuffix(w, "/upshift"))
}

var assignRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*=`)

func isAssignment(w string) bool { return assignRE.MatchString(w) }

// shellWords splits s as sh would: blanks separate words, quotes group and
// are removed, a backslash escapes the next character. false when a quote
// is left open.
func shellWords(s string) ([]string, bool) {
	var (
		words []string
		cur   strings.Builder
		in    bool
		quote rune
	)
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch {
			case r == '"':
				quote = 0
			case r == '\\' && i+1 < len(rs):
				i++
				cur.WriteRune(rs[i])
			default:
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			cur.WriteRune(rs[i])
			in = true
		case r == ' ' || r == '\t':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 {
		return nil, false
	}
	if in {
		words = append(words, cur.String())
	}
	return words, true
}
