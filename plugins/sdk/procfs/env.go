package procfs

import (
	"maps"
	"os"
	"slices"
	"strings"
)

// childEnvNames are the variables of this process's environment a child
// keeps: what finding programs, locale, time zone, temporary files and
// system TLS roots need. Everything else (UPSHIFT_VAR_* secrets, cloud
// credentials, agent sockets) stays with upshift.
var childEnvNames = []string{
	"PATH", "HOME", "USER", "LOGNAME", "SHELL",
	"LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "LC_COLLATE", "LC_NUMERIC", "LC_TIME",
	"TZ", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR",
}

// defaultPath is PATH for a child when this process has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ChildEnv is the environment of a command a plugin starts: the allow-list
// above taken from this process, then extra (sorted by name, so a command
// line is reproducible), which may override them. Every child a plugin
// starts gets it: exec commands, node processes, pg_dump and mysqldump
// (their passwords go in extra or in a private file, never inherited).
func ChildEnv(extra map[string]string) []string {
	env := make([]string, 0, len(childEnvNames)+len(extra))
	for _, k := range childEnvNames {
		if _, over := extra[k]; over {
			continue
		}
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		} else if k == "PATH" {
			env = append(env, "PATH="+defaultPath)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(extra)) {
		env = append(env, k+"="+extra[k])
	}
	return env
}

// minHidden is the shortest environment value HideValues hides: shorter
// ones (1, on, yes) would blank ordinary words out of a message.
const minHidden = 6

// HideValues replaces in s, a message about a command (its last lines of
// output in an error), every value of env at least 6 bytes long by
// "(hidden)": a step's environment often carries a password, which the
// plugin cannot tell from an ordinary value, and the message reaches the
// terminal and the journal.
func HideValues(s string, env map[string]string) string {
	vals := make([]string, 0, len(env))
	for _, v := range env {
		if len(v) >= minHidden {
			vals = append(vals, v)
		}
	}
	slices.SortFunc(vals, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, v := range vals {
		s = strings.ReplaceAll(s, v, "(hidden)")
	}
	return s
}
