package procfs

import (
	"maps"
	"os"
	"slices"
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
