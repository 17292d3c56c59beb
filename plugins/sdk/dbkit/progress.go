package dbkit

import (
	"fmt"
	"sync"
	"time"

	"github.com/upshift-dev/upshift/plugins/sdk"
)

// ProgressEvery is how often a Meter reports. A variable so that tests
// need not wait.
var ProgressEvery = 2 * time.Second

// Unit says what a Meter counts.
type Unit int

const (
	// Bytes are shown as KiB, MiB, GiB.
	Bytes Unit = iota
	// Rows are shown as plain counts (12.3M rows).
	Rows
)

// Meter reports a long copy or backup on its request's progress channel
// every ProgressEvery: what is done of the total, the rate over the
// whole run so far, and the time left at that rate, e.g.
//
//	copy: 412 MiB of 1.0 GiB (40%), 83 MiB/s, about 7s left
//
// The total is an estimate (database sizes on disk are not dump sizes),
// so a done past it is shown as the total not yet reached.
type Meter struct {
	r     *sdk.Request
	what  string
	unit  Unit
	total int64
	done  func() int64
	start time.Time
	// every is ProgressEvery when the meter started: Stop may run after a
	// test put the variable back, as a cancelled copy unwinds.
	every time.Duration

	stopOnce sync.Once
	stop     chan struct{}
	wg       sync.WaitGroup
}

// StartMeter reports what done() returns against total on r until Stop.
// what is one word (copy, dump, restore, backup): the runner reads it as
// the phase of the step's progress fields (runner.ParseProgress), which
// take a line of this shape apart for the live view and --json.
// done is called from the meter's own goroutine, so it must be safe for
// that (an atomic counter, a file size, a query on a connection of its
// own).
func StartMeter(r *sdk.Request, what string, unit Unit, total int64, done func() int64) *Meter {
	m := &Meter{r: r, what: what, unit: unit, total: total, done: done, start: time.Now(), every: ProgressEvery, stop: make(chan struct{})}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(m.every)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				r.Progress("%s", m.Line(m.done(), time.Since(m.start)))
			}
		}
	}()
	return m
}

// Stop ends the reports and sends a last line with the figures at the
// end (done, elapsed time, mean rate) when the work took at least one
// report period. Safe to call more than once.
func (m *Meter) Stop() {
	m.stopOnce.Do(func() {
		close(m.stop)
		m.wg.Wait()
		if el := time.Since(m.start); el >= m.every {
			n := m.done()
			m.r.Progress("%s: %s in %s, %s", m.what, m.amount(n), el.Round(100*time.Millisecond), m.rate(n, el))
		}
	})
}

// Line is the report for done after elapsed.
func (m *Meter) Line(done int64, elapsed time.Duration) string {
	if m.total <= 0 {
		return fmt.Sprintf("%s: %s, %s", m.what, m.amount(done), m.rate(done, elapsed))
	}
	shown := min(done, m.total)
	s := fmt.Sprintf("%s: %s of %s (%d%%), %s", m.what, m.amount(shown), m.amount(m.total), shown*100/m.total, m.rate(done, elapsed))
	if done > 0 && done < m.total && elapsed > 0 {
		left := time.Duration(float64(elapsed) * float64(m.total-done) / float64(done))
		s += fmt.Sprintf(", about %s left", left.Round(time.Second))
	}
	return s
}

func (m *Meter) rate(done int64, elapsed time.Duration) string {
	if elapsed <= 0 {
		return "rate unknown"
	}
	per := int64(float64(done) / elapsed.Seconds())
	return m.amount(per) + "/s"
}

func (m *Meter) amount(n int64) string {
	if m.unit == Rows {
		return Count(n) + " rows"
	}
	return Size(n)
}

// Size shows n bytes in binary units: 512 B, 1.5 KiB, 412 MiB, 1.0 GiB.
func Size(n int64) string {
	const k = 1024
	switch {
	case n < k:
		return fmt.Sprintf("%d B", n)
	case n < k*k:
		return fmt.Sprintf("%.1f KiB", float64(n)/k)
	case n < k*k*k:
		return fmt.Sprintf("%.0f MiB", float64(n)/(k*k))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(k*k*k))
}

// Count shows n as 950, 12.3k, 4.5M.
func Count(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d", n)
	case n < 1000000:
		return fmt.Sprintf("%.1fk", float64(n)/1e3)
	}
	return fmt.Sprintf("%.1fM", float64(n)/1e6)
}
