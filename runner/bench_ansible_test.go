package runner_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkAnsibleExecTrue is the reference for BenchmarkExecTrue500: the
// same command, /bin/true, run 50 times in a row by Ansible's command
// module on this machine (connection local, no fact gathering), per task:
// the run of 50 tasks less the run of 1, over 49, so ansible-playbook's
// own start does not count. Skipped, with a note, when ansible-playbook is
// not installed.
func BenchmarkAnsibleExecTrue(b *testing.B) {
	bin, err := exec.LookPath("ansible-playbook")
	if err != nil {
		b.Skip("ansible-playbook is not installed (apt install ansible): no Ansible reference")
	}
	dir := b.TempDir()
	write := func(tasks int) string {
		var sb strings.Builder
		sb.WriteString("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n")
		for i := 0; i < tasks; i++ {
			fmt.Fprintf(&sb, "    - name: t%d\n      ansible.builtin.command: /bin/true\n", i)
		}
		p := filepath.Join(dir, fmt.Sprintf("true-%d.yml", tasks))
		if err := os.WriteFile(p, []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
		return p
	}
	one, fifty := write(1), write(50)
	run := func(playbook string) time.Duration {
		cmd := exec.Command(bin, "-i", "localhost,", playbook)
		cmd.Env = append(os.Environ(), "ANSIBLE_NOCOLOR=1", "ANSIBLE_LOCALHOST_WARNING=false", "ANSIBLE_INVENTORY_UNPARSED_WARNING=false")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ansible-playbook: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	for i := 0; i < b.N; i++ {
		perTask := (run(fifty) - run(one)) / 49
		b.ReportMetric(float64(perTask.Microseconds())/1000, "ms/step")
	}
}
