package main

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// stopper turns signals into a run's stop: Ctrl-C (SIGINT), SIGTERM,
// SIGHUP (the terminal was closed) and SIGPIPE (the pipe upshift writes to
// is gone) all start no new step and let running steps finish, so the
// journal, the lock and the plugins are settled on every one of them. Only
// a second SIGINT or SIGTERM cancels running steps: a hung-up terminal
// keeps sending SIGHUP and SIGPIPE, and must not cancel a migration.
type stopper struct {
	stderr  io.Writer
	cancel  func()
	signals chan os.Signal
	stop    chan struct{}
	// hangup: upshift listens for SIGHUP (not when started under nohup).
	hangup bool

	mu     sync.Mutex
	reason string
	closed bool
}

func newStopper(stderr io.Writer, cancel func()) *stopper {
	s := &stopper{stderr: stderr, cancel: cancel, signals: make(chan os.Signal, 4), stop: make(chan struct{}),
		hangup: !signal.Ignored(syscall.SIGHUP)}
	signal.Notify(s.signals, os.Interrupt, syscall.SIGTERM, syscall.SIGPIPE)
	if s.hangup {
		signal.Notify(s.signals, syscall.SIGHUP)
	}
	go s.loop()
	return s
}

func (s *stopper) loop() {
	for sig := range s.signals {
		if sig == syscall.SIGPIPE && !outputGone() {
			// Any write to a broken pipe raises SIGPIPE once it is
			// notified, a plugin's connection closing too: only the loss
			// of upshift's own output stops the run.
			continue
		}
		name := signalName(sig)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			continue
		}
		first := s.reason == ""
		if first {
			s.reason = name
			close(s.stop)
		}
		s.mu.Unlock()
		switch {
		case first:
			fmt.Fprintf(s.stderr, "Stopping (%s): no new step will start; running steps finish and are recorded (before the point of no return, the cluster is then returned to where it began). Interrupt again to cancel them.\n", name)
		case sig == os.Interrupt || sig == syscall.SIGTERM:
			fmt.Fprintf(s.stderr, "Cancelling running steps (%s).\n", name)
			s.cancel()
		}
	}
}

// hangupIgnoredWhileLoading: see withHangupIgnored.
var hangupIgnoredWhileLoading = true

// withHangupIgnored runs f (which starts the plugins) with SIGHUP ignored:
// the plugin processes inherit that, so the hang-up of a closed terminal,
// sent to its whole process group, does not kill them in the middle of a
// step. upshift hears SIGHUP again when f returns. A hang-up during f is
// not seen.
//
// Ignoring is for good in one respect: the Go runtime then keeps SIG_IGN
// as the disposition it restores once upshift stops listening, so every
// process started afterwards inherits SIGHUP ignored. The command exits
// after one run, so that is harmless there; tests that run upshift in
// their own process turn it off (hangupIgnoredWhileLoading), or every
// upshift they start later would take itself for one started by nohup.
func (s *stopper) withHangupIgnored(f func() (*loaded, error)) (*loaded, error) {
	if !hangupIgnoredWhileLoading {
		return f()
	}
	signal.Ignore(syscall.SIGHUP)
	defer func() {
		if s.hangup {
			signal.Notify(s.signals, syscall.SIGHUP)
		}
	}()
	return f()
}

// Stop is closed by the first signal.
func (s *stopper) Stop() <-chan struct{} { return s.stop }

// Stopped reports whether a signal has stopped the run.
func (s *stopper) Stopped() bool { return s.Reason() != "" }

// Reason names the signal that stopped the run, or "".
func (s *stopper) Reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reason
}

// Close stops listening. SIGPIPE stays ignored: with the output gone, a
// last message must fail with EPIPE, not kill upshift before it exits with
// its own code.
func (s *stopper) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	signal.Stop(s.signals)
	signal.Ignore(syscall.SIGPIPE)
}

// outputGone reports whether stdout or stderr can no longer be written:
// the reader of its pipe is gone, or its terminal hung up.
func outputGone() bool {
	fds := []unix.PollFd{{Fd: 1, Events: unix.POLLOUT}, {Fd: 2, Events: unix.POLLOUT}}
	if _, err := unix.Poll(fds, 0); err != nil {
		return false
	}
	for _, f := range fds {
		if f.Revents&(unix.POLLERR|unix.POLLHUP) != 0 {
			return true
		}
	}
	return false
}

func signalName(sig os.Signal) string {
	switch sig {
	case os.Interrupt:
		return "SIGINT"
	case syscall.SIGTERM:
		return "SIGTERM"
	case syscall.SIGHUP:
		return "SIGHUP"
	case syscall.SIGPIPE:
		return "SIGPIPE"
	}
	return sig.String()
}
