package journal

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// StepSummary is one row of `upshift status`.
type StepSummary struct {
	Address   string
	Status    Status
	Attempts  int
	StartedAt time.Time
	Duration  time.Duration // zero until the step has ended
	Error     string        // first line of the step's error
}

// Summarize returns one row per step: started steps by start time then
// address, then steps not started yet by address.
func Summarize(run *Run) []StepSummary {
	if run == nil {
		return nil
	}
	rows := make([]StepSummary, 0, len(run.Steps))
	for _, s := range run.Steps {
		row := StepSummary{
			Address:   s.Address,
			Status:    s.Status,
			Attempts:  s.Attempts,
			StartedAt: s.StartedAt,
			Error:     firstLine(s.Error),
		}
		if row.Error == "" {
			row.Error = firstLine(s.Note) // the last column says what is worth knowing
		}
		if !s.StartedAt.IsZero() && !s.EndedAt.IsZero() && s.EndedAt.After(s.StartedAt) {
			row.Duration = s.EndedAt.Sub(s.StartedAt)
		}
		rows = append(rows, row)
	}
	sort.Slice(rows, func(i, k int) bool {
		a, b := rows[i], rows[k]
		if a.StartedAt.IsZero() != b.StartedAt.IsZero() {
			return !a.StartedAt.IsZero()
		}
		if !a.StartedAt.Equal(b.StartedAt) {
			return a.StartedAt.Before(b.StartedAt)
		}
		return a.Address < b.Address
	})
	return rows
}

// Format writes run as a human table for `upshift status`: a header line,
// then address, status, attempts, duration and error per step.
func Format(w io.Writer, run *Run) error {
	if run == nil {
		_, err := fmt.Fprintln(w, "no run recorded")
		return err
	}
	counts := map[Status]int{}
	for _, s := range run.Steps {
		counts[s.Status]++
	}
	var tally []string
	for _, st := range []Status{Done, Running, Failed, RolledBack, Skipped, Pending} {
		if counts[st] > 0 {
			tally = append(tally, fmt.Sprintf("%d %s", counts[st], st))
		}
	}
	if _, err := fmt.Fprintf(w, "run %s: %s (%s)\nplaybook %s, started %s, updated %s\n\n",
		run.ID, run.Status, strings.Join(tally, ", "), run.Playbook,
		localTime(run.StartedAt), localTime(run.UpdatedAt)); err != nil {
		return err
	}

	var table bytes.Buffer
	tw := tabwriter.NewWriter(&table, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STEP\tSTATUS\tATTEMPTS\tDURATION\tERROR")
	for _, r := range Summarize(run) {
		attempts, dur := "-", "-"
		if r.Attempts > 0 {
			attempts = fmt.Sprint(r.Attempts)
		}
		if r.Duration > 0 {
			dur = roundDuration(r.Duration).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Address, r.Status, attempts, dur, r.Error)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	// tabwriter pads the cell before an empty last column; drop that.
	for line := range strings.Lines(table.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// localTime shows a stored (UTC) time in the reader's zone, naming it.
func localTime(t time.Time) string {
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

// roundDuration keeps about three significant figures, which is what a
// person reading a status table wants.
func roundDuration(d time.Duration) time.Duration {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond)
	case d < time.Minute:
		return d.Round(100 * time.Millisecond)
	default:
		return d.Round(time.Second)
	}
}

func firstLine(s string) string {
	s, _, cut := strings.Cut(strings.TrimSpace(s), "\n")
	if cut {
		return strings.TrimSpace(s) + " …"
	}
	return s
}
