// Package benchmeter owns what benchmarks measure beside wall time: the
// CPU time this process spent (every goroutine, user and system) and the
// peak heap, sampled while the measured code runs. Several packages'
// benchmarks report the same figures, which make bench gathers into one
// table.
package benchmeter

import (
	"runtime"
	"syscall"
	"time"
)

// Meter measures from Start until Stop.
type Meter struct {
	cpu0 time.Duration
	peak uint64
	stop chan struct{}
	done chan struct{}
}

// Start begins measuring, after a GC so that the heap left by setup does
// not count.
func Start() *Meter {
	runtime.GC()
	m := &Meter{cpu0: cpuTime(), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			m.sample()
			select {
			case <-m.stop:
				return
			case <-t.C:
			}
		}
	}()
	return m
}

func (m *Meter) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.peak = max(m.peak, ms.HeapAlloc)
}

// Stop ends the measure: the CPU time spent since Start, and the largest
// heap seen, in MB.
func (m *Meter) Stop() (cpu time.Duration, peakHeapMB float64) {
	close(m.stop)
	<-m.done
	m.sample()
	return cpuTime() - m.cpu0, float64(m.peak) / (1 << 20)
}

// cpuTime is this process's user and system time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ChildrenMaxRSSMB is the largest resident set of any waited-for child
// process so far (a plugin, once it has exited), in MB.
func ChildrenMaxRSSMB() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru); err != nil {
		return 0
	}
	return float64(ru.Maxrss) / 1024 // kilobytes on Linux
}
