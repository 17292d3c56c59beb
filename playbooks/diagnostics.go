package playbooks

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"

	"github.com/hashicorp/hcl/v2"
)

// MaxDiagnosticsPerFile is how many diagnostics WriteDiagnostics shows for
// one file; it then says how many more there were.
const MaxDiagnosticsPerFile = 20

// WriteDiagnostics renders diags for a person: a first line with
// file:line:col, severity and summary, then HCL's own rendering with the
// source snippet and detail, at most MaxDiagnosticsPerFile of them per file.
// Paths are shown relative to base when they are
// below it, so golden files do not depend on where a test runs.
func WriteDiagnostics(w io.Writer, files map[string]*hcl.File, diags hcl.Diagnostics, base string, color bool) error {
	// The text writer finds sources by file name: index them by the short
	// names shown as well.
	byName := make(map[string]*hcl.File, 2*len(files))
	for name, f := range files {
		byName[name] = f
		byName[relPath(base, name)] = f
	}
	var buf bytes.Buffer
	tw := hcl.NewDiagnosticTextWriter(&buf, byName, 0, color)
	written := map[string]int{}
	hidden := map[string]int{}
	var order []string
	for _, d := range diags {
		file := ""
		if d.Subject != nil {
			file = relPath(base, d.Subject.Filename)
		}
		if written[file] >= MaxDiagnosticsPerFile {
			if hidden[file] == 0 {
				order = append(order, file)
			}
			hidden[file]++
			continue
		}
		written[file]++
		sev := "error"
		if d.Severity == hcl.DiagWarning {
			sev = "warning"
		}
		where := "upshift"
		if d.Subject != nil {
			where = fmt.Sprintf("%s:%d:%d", relPath(base, d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column)
		}
		if _, err := fmt.Fprintf(w, "%s: %s: %s\n", where, sev, d.Summary); err != nil {
			return err
		}
		shown := *d
		if d.Subject != nil {
			subj := *d.Subject
			subj.Filename = relPath(base, subj.Filename)
			shown.Subject = &subj
		}
		if d.Context != nil {
			ctx := *d.Context
			ctx.Filename = relPath(base, ctx.Filename)
			shown.Context = &ctx
		}
		buf.Reset()
		if err := tw.WriteDiagnostic(&shown); err != nil {
			return err
		}
		// The header line above already says severity and summary.
		body := buf.Bytes()
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			body = body[i+1:]
		}
		if _, err := w.Write(body); err != nil {
			return err
		}
	}
	for _, file := range order {
		where, what := file, "this file"
		if file == "" {
			where, what = "upshift", "no file"
		}
		if _, err := fmt.Fprintf(w, "%s: %d more diagnostics for %s not shown (the first %d are above).\n", where, hidden[file], what, MaxDiagnosticsPerFile); err != nil {
			return err
		}
	}
	return nil
}

func relPath(base, path string) string {
	if base == "" {
		return path
	}
	rel, err := filepath.Rel(base, path)
	if err != nil || len(rel) > 2 && rel[:3] == "../" {
		return path
	}
	return rel
}
