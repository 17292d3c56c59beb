package journal

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

// The tests re-execute their own binary as a helper process (to be killed
// with SIGKILL, or to hold a lock from another process); helperEnv selects
// what the helper does.
const (
	helperEnv       = "UPSHIFT_JOURNAL_TEST_HELPER"
	helperDirEnv    = "UPSHIFT_JOURNAL_TEST_DIR"
	helperNoSyncEnv = "UPSHIFT_JOURNAL_TEST_NOSYNC"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperDirEnv)))
	}
	code := m.Run()
	if err := stopPG(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the throwaway PostgreSQL:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

func runHelper(mode, dir string) int {
	var err error
	switch mode {
	case "update":
		err = helperUpdate(dir)
	case "lock":
		err = helperLock(dir)
	case "pgupdate":
		err = helperPGUpdate()
	case "pglock":
		err = helperPGLock()
	default:
		err = fmt.Errorf("unknown helper mode %q", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// Crash-test workload: update i writes crashStep(i); the state after k
// updates is therefore known exactly (crashState(k)), and k can be read back
// from the journal as the highest Attempts.
const (
	crashSteps        = 13
	crashCompactAfter = 17 // small, so kills also land inside compactions
	crashMaxUpdates   = 20000
)

func crashStep(i int) Step {
	// Some records span several pages: the kernel can stop a write between
	// pages when SIGKILL arrives, which is how a torn line happens here.
	pad := (i % 7) * 90
	if i%5 == 0 {
		pad = 3*4096 + i%4096
	}
	s := Step{
		Address:  fmt.Sprintf("step.s[%q]", fmt.Sprint(i%crashSteps)),
		Status:   Running,
		Attempts: i + 1,
		Action:   "node_pool.cluster.exec",
		Args:     json.RawMessage(fmt.Sprintf(`{"i":%d,"pad":%q}`, i, strings.Repeat("x", pad))),
	}
	if i%2 == 1 {
		s.Status = Done
		s.Result = json.RawMessage(fmt.Sprintf(`{"ok":%d}`, i))
	}
	return s
}

func crashState(k int) map[string]*Step {
	m := map[string]*Step{}
	for i := max(0, k-crashSteps); i < k; i++ {
		s := crashStep(i)
		m[s.Address] = &s
	}
	return m
}

func crashProgress(run *Run) int {
	k := 0
	if run != nil {
		for _, s := range run.Steps {
			k = max(k, s.Attempts)
		}
	}
	return k
}

// helperUpdate resumes (or begins) the crash-test run and updates it in a
// tight loop, printing the number of updates made durable after each Update.
func helperUpdate(dir string) error {
	// SIGKILL leaves the page cache intact, so without fsync the loop runs
	// faster and kills land inside writes more often; both are exercised.
	noSync := os.Getenv(helperNoSyncEnv) != ""
	j, err := OpenWithOptions(dir, Options{CompactAfter: crashCompactAfter, NoSync: noSync})
	if err != nil {
		return err
	}
	run, err := j.Load()
	if err != nil {
		return err
	}
	if run == nil {
		if err := j.Begin(&Run{ID: "crash", Playbook: "p"}); err != nil {
			return err
		}
	}
	// As the runner would: Record marks a step running, Update (durable,
	// acknowledged) records how it ended.
	for i := crashProgress(run); i < crashMaxUpdates; i++ {
		s := crashStep(i)
		if s.Status == Running {
			if err := j.Record(s); err != nil {
				return err
			}
			continue
		}
		if err := j.Update(s); err != nil {
			return err
		}
		fmt.Printf("%d\n", i+1)
	}
	return nil
}

// helperLock holds the lock on dir until it is killed (or 30 s pass).
func helperLock(dir string) error {
	l, err := Acquire(dir, Owner{Command: "upshift run playbooks/rolling-upgrade"})
	if err != nil {
		return err
	}
	fmt.Println("locked")
	time.Sleep(30 * time.Second)
	return l.Release()
}
