package schema

import (
	"fmt"
	"sort"

	"github.com/zclconf/go-cty/cty"
)

// Helpers that keep the contract tables below readable.
func req(name string, ty cty.Type, desc string) *Attribute {
	return &Attribute{Name: name, Type: ty, Required: true, Description: desc}
}

func opt(name string, ty cty.Type, desc string) *Attribute {
	return &Attribute{Name: name, Type: ty, Description: desc}
}

func secret(a *Attribute) *Attribute {
	a.Sensitive = true
	return a
}

func obj(attrs ...*Attribute) *Object { return &Object{Attributes: attrs} }

// ServerStatusType is one server as a load balancer reports it.
var ServerStatusType = cty.Object(map[string]cty.Type{
	"name":     cty.String,
	"state":    cty.String, // ready | drain | maint
	"health":   cty.String, // up | down | unknown
	"sessions": cty.Number, // current sessions (in-flight requests)
})

// counterNames are the traffic counters a load balancer's metrics report,
// cumulative since the load balancer (or, for a log-based vendor, the
// plugin) started counting: the runner compares two samples.
var counterNames = []string{
	"requests", // HTTP requests answered (or failed) through the load balancer
	"http_1xx", // responses by status class, as the client saw them
	"http_2xx",
	"http_3xx",
	"http_4xx",
	"http_5xx",
	"connection_errors", // attempts that could not reach a server
	"response_errors",   // attempts whose server failed mid-answer or timed out
	"retries",           // attempts made again on the same server
	"redispatches",      // requests moved to another server after a failure
}

func countersType(extra map[string]cty.Type) cty.Type {
	attrs := map[string]cty.Type{"sessions": cty.Number} // current, not cumulative
	for _, n := range counterNames {
		attrs[n] = cty.Number
	}
	for k, v := range extra {
		attrs[k] = v
	}
	return cty.Object(attrs)
}

// CountersType is a load balancer's traffic counters for a whole backend:
// every request it took, including those no server could answer.
var CountersType = countersType(nil)

// ServerCountersType is one server's traffic counters.
var ServerCountersType = countersType(map[string]cty.Type{"name": cty.String})

// CounterNames lists the cumulative counters of CountersType, in a stable
// order (sessions, a gauge, is not among them).
func CounterNames() []string { return append([]string(nil), counterNames...) }

// contracts holds the standard actions of each kind. Every vendor of a kind
// implements all of them, so a playbook switches vendor by changing one word.
var contracts = map[Kind][]*Action{
	KindLoadBalancer: {
		{
			Name:        "drain",
			Description: "Stops sending new requests to a server, waits until its in-flight requests have finished, then takes it out of rotation (maintenance). Refuses when fewer than min_in_service other servers would remain in service.",
			Args: obj(
				req("server", cty.String, "Server name as the load balancer knows it."),
				opt("timeout", cty.String, "How long to wait for in-flight requests to finish, as a duration (\"60s\"). Default 60s."),
				opt("min_in_service", cty.Number, "Refuse to drain unless at least this many other servers are up and in rotation. Default 1."),
			),
			Result: obj(
				req("server", cty.String, "The server drained."),
				req("state", cty.String, "The server's state afterwards (maint)."),
			),
			Idempotent: true,
			Undo:       "enable",
		},
		{
			Name:        "enable",
			Description: "Puts a server back in rotation and waits until the load balancer's own health check reports it up.",
			Args: obj(
				req("server", cty.String, "Server name as the load balancer knows it."),
				opt("timeout", cty.String, "How long to wait for the server to be reported up. Default 60s."),
			),
			Result: obj(
				req("server", cty.String, "The server enabled."),
				req("state", cty.String, "The server's state afterwards (ready)."),
			),
			Idempotent: true,
			// A rollback (a traffic guard's, say) takes a server it
			// enabled back out of rotation, in-flight requests first.
			Undo: "drain",
		},
		{
			Name:        "status",
			Description: "Reports every server of the backend with its state, health and current sessions.",
			Args:        obj(),
			Result: obj(
				req("servers", cty.List(ServerStatusType), "Every server of the backend."),
			),
			Idempotent: true,
			Probe:      true,
		},
		{
			Name:        "metrics",
			Description: "Reports the load balancer's own traffic counters for the backend and each server: requests, responses by status class, connection and response errors, retries, redispatches (cumulative) and current sessions. Read-only; a runner compares two samples to see what clients met in between.",
			Args:        obj(),
			Result: obj(
				req("backend", CountersType, "The whole backend, including requests no server could take."),
				req("servers", cty.List(ServerCountersType), "Each server of the backend."),
			),
			Idempotent: true,
			Probe:      true,
		},
		{
			Name:        "preflight",
			Description: "Checks, changing nothing, that a rollout over these servers can begin: the load balancer answers, knows every server, each is up and in rotation, and draining max_parallel of them at a time leaves at least min_in_service others in service. Every problem is reported at once.",
			Args: obj(
				req("servers", cty.List(cty.String), "The servers the rollout drains, as the load balancer knows them."),
				opt("min_in_service", cty.Number, "The drain steps' min_in_service. Default 1."),
				opt("max_parallel", cty.Number, "How many servers the rollout drains at once. Default 1."),
			),
			Result: obj(
				req("servers", cty.Number, "Servers the backend has."),
				req("in_service", cty.Number, "Servers up and in rotation now."),
			),
			Idempotent: true,
			Probe:      true,
		},
		{
			Name:        "verify",
			Description: "Checks, changing nothing, the end state of a rollout: the load balancer answers and every one of these servers is in its backend, in rotation and up. Every problem is reported at once.",
			Args: obj(
				req("servers", cty.List(cty.String), "The servers that must all be serving, as the load balancer knows them."),
			),
			Result: obj(
				req("in_service", cty.Number, "Servers up and in rotation now."),
			),
			Idempotent: true,
			Probe:      true,
		},
	},
	KindDatabase: {
		{
			Name:        "backup",
			Description: "Writes a consistent backup of the database to a path, readable while the database keeps serving reads.",
			Args: obj(
				req("to", cty.String, "Path of the backup file to write."),
			),
			Result: obj(
				req("path", cty.String, "Path of the backup written."),
				req("bytes", cty.Number, "Size of the backup in bytes."),
			),
			Idempotent: true,
		},
		{
			Name:        "copy",
			Description: "Copies the configured database (A) to a new database (B) that upgraded nodes will use.",
			Args: obj(
				req("to", cty.String, "Name of the new database (a file path for embedded databases)."),
				opt("replace", cty.Bool, "Drop an existing B and copy again. Default false: an existing B is an error unless it is a finished copy whose marker names this run_id (a resumed run). Never replaces a B upshift may not own (on PostgreSQL, one owned by another role)."),
				opt("run_id", cty.String, "Id of the run making the copy (run.id). The finished-copy marker records it, and an existing B is adopted only when its marker names the same id; a copy from another run, or a marker someone wrote, is refused unless replace = true. Without it, only a marker that names no run is adopted."),
			),
			Result: obj(
				req("name", cty.String, "Name of the new database."),
				secret(req("dsn", cty.String, "How nodes connect to the new database (may hold credentials).")),
				req("method", cty.String, "How the copy was made, e.g. template, dump-restore, file-copy, backup-api; kept when B was this run's finished copy already."),
			),
			Idempotent: true,
			Undo:       "drop",
		},
		{
			Name:        "read_only",
			Description: "Turns database-level read-only mode on or off.",
			Args: obj(
				req("enabled", cty.Bool, "true for read-only."),
			),
			Result: obj(
				req("enabled", cty.Bool, "Read-only mode afterwards."),
			),
			Idempotent: true,
		},
		{
			Name:        "drop",
			Description: "Drops a database made by copy. Refuses the configured database (A), a database copy did not make, and, given run_id, the copy of another run.",
			Args: obj(
				req("name", cty.String, "Name of the database to drop."),
				opt("run_id", cty.String, "Id of the run whose copy this is (the copy's run_id). When given, only a copy whose marker names this run is dropped."),
			),
			Result: obj(
				req("dropped", cty.Bool, "Whether a database was dropped (false when it did not exist)."),
			),
			Idempotent: true,
		},
		{
			Name:        "lock",
			Description: "Takes a lock held in the database for as long as this plugin process lives or until unlock: one run per cluster, wherever it is started. Taken already by this process: kept. Held by another: refused at once (or after wait), naming the holder. The lock is freed when the plugin process ends, so a crashed run does not keep it.",
			Args: obj(
				opt("name", cty.String, "Lock name (letters, digits, _). Default \"upshift\"."),
				req("holder", cty.String, "Who takes the lock, shown to a run that finds it held: run id, user@host, start time."),
				opt("wait", cty.String, "How long to wait for a lock held by another, as a duration. Default 0s: refuse at once."),
			),
			Result: obj(
				req("name", cty.String, "Lock name."),
				req("holder", cty.String, "The holder now: this run's holder argument."),
			),
			Idempotent: true,
			Undo:       "unlock",
		},
		{
			Name:        "unlock",
			Description: "Releases a lock this plugin process holds. A lock it does not hold (free, or another run's) is left as it is.",
			Args: obj(
				opt("name", cty.String, "Lock name. Default \"upshift\"."),
			),
			Result: obj(
				req("name", cty.String, "Lock name."),
				req("released", cty.Bool, "Whether this process held the lock and released it."),
			),
			Idempotent: true,
		},
		{
			Name:        "check",
			Description: "Connects and reports what the database is.",
			Args:        obj(),
			Result: obj(
				req("name", cty.String, "Configured database name."),
				req("version", cty.String, "Server version."),
			),
			Idempotent: true,
			Probe:      true,
		},
		{
			Name:        "preflight",
			Description: "Checks, changing nothing, that backup and copy can run: the database answers, A exists, the connecting user may do what copy needs, B is absent or this run's finished copy, and the backup folder has room for a backup of A. Every problem is reported at once.",
			Args: obj(
				opt("to", cty.String, "Name of the copy (B) the run will make."),
				opt("run_id", cty.String, "Id of the run (run.id): a B whose finished-copy marker names it is this run's, and fine."),
				opt("backup_dir", cty.String, "Folder the backup goes into (it or its nearest existing parent must be writable with room for A's size)."),
			),
			Result: obj(
				req("name", cty.String, "The configured database (A)."),
				req("size_bytes", cty.Number, "A's size as the server reports it; -1 when unknown."),
			),
			Idempotent: true,
			Probe:      true,
		},
	},
	KindNodePool: {
		{
			Name:        "start",
			Description: "Starts a node's service. A node already running is left as it is.",
			Args: obj(
				req("node", cty.String, "Node name."),
				opt("timeout", cty.String, "How long to wait for the service to be running. Default 30s."),
			),
			Result:     obj(req("node", cty.String, "The node started.")),
			Idempotent: true,
			Undo:       "stop",
		},
		{
			Name:        "stop",
			Description: "Stops a node's service gracefully, then forcibly after the timeout. A stopped node is left as it is.",
			Args: obj(
				req("node", cty.String, "Node name."),
				opt("timeout", cty.String, "Grace period before the service is killed. Default 30s."),
			),
			Result:     obj(req("node", cty.String, "The node stopped.")),
			Idempotent: true,
			Undo:       "start",
		},
		{
			Name:        "exec",
			Description: "Runs a command on a node, as an argument vector, or through the shell when `shell` is given instead.",
			Args: obj(
				req("node", cty.String, "Node name."),
				opt("command", cty.List(cty.String), "Argument vector; no shell is involved."),
				opt("shell", cty.String, "A shell command line, run with sh -c. Exactly one of command and shell."),
				opt("timeout", cty.String, "Deadline for the command. Default 10m."),
				opt("env", cty.Map(cty.String), "Extra environment variables."),
				opt("check", cty.List(cty.String), "Argument vector of a command that says whether the command's effect already happened: exit 0 it did, 1 it did not, anything else unknown. Asked when a run resumes after the step was interrupted, so a crash during a migration is settled rather than run twice or left to the operator. Runs with the same environment."),
			),
			Result: obj(
				req("exit_code", cty.Number, "The command's exit code (0; a non-zero exit fails the step)."),
				req("stdout", cty.String, "Standard output, truncated to 64 KiB."),
				req("stderr", cty.String, "Standard error, truncated to 64 KiB."),
			),
		},
		{
			Name:        "set_config",
			Description: "Sets one key of the node's configuration file.",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("key", cty.String, "Configuration key."),
				req("value", cty.String, "New value. Shown as (sensitive) when it comes from a sensitive value, such as a copy's dsn."),
			),
			Result: obj(
				req("changed", cty.Bool, "Whether the file changed."),
				opt("existed", cty.Bool, "Whether the key was set before; null when the plugin cannot read the file back."),
				secret(opt("previous", cty.String, "The value the key had before (null when it had none), which restore_config puts back on rollback. Kept sensitive: it may be a database address with credentials.")),
			),
			Idempotent: true,
			Undo:       "restore_config",
		},
		{
			Name:        "restore_config",
			Description: "Puts one key of the node's configuration file back as set_config found it (the undo of set_config): the previous value, or no key when it had none.",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("key", cty.String, "Configuration key."),
				opt("existed", cty.Bool, "Whether the key was set before set_config; null (unknown) refuses, since the value to restore is not known."),
				secret(opt("previous", cty.String, "The value to put back when existed.")),
			),
			Result:     obj(req("changed", cty.Bool, "Whether the file changed.")),
			Idempotent: true,
		},
		{
			Name:        "touch",
			Description: "Creates an empty file in the node's data folder (a marker such as rolling-upgrade).",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("path", cty.String, "Path relative to the node's data folder."),
			),
			Result: obj(
				req("path", cty.String, "Absolute path of the file."),
				opt("created", cty.Bool, "Whether touch made the file (false: it was there already, and its undo leaves it)."),
			),
			Idempotent: true,
			Undo:       "remove",
		},
		{
			Name:        "remove",
			Description: "Removes a file touch made in the node's data folder (the undo of touch). A missing file is fine; a folder or a link is refused.",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("path", cty.String, "Path relative to the node's data folder."),
				opt("created", cty.Bool, "false: the file was there before touch, and is left. Default true."),
			),
			Result:     obj(req("removed", cty.Bool, "Whether a file was removed.")),
			Idempotent: true,
		},
		{
			Name:        "read_only",
			Description: "Turns the platform's full read-only mode on or off on a node: reads keep being served, writes are refused cleanly.",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("enabled", cty.Bool, "true for read-only."),
			),
			Result: obj(
				req("node", cty.String, "Node name."),
				req("enabled", cty.Bool, "Read-only mode afterwards."),
			),
			Idempotent: true,
			Undo:       "read_write",
		},
		{
			Name:        "read_write",
			Description: "Turns the platform's read-only mode off on a node (the undo of read_only): it takes writes again.",
			Args:        obj(req("node", cty.String, "Node name.")),
			Result: obj(
				req("node", cty.String, "Node name."),
				req("enabled", cty.Bool, "Read-only mode afterwards (false)."),
			),
			Idempotent: true,
		},
		{
			Name:        "wait_healthy",
			Description: "Waits until a node's health check succeeds several times in a row, optionally on a given version and writable.",
			Args: obj(
				req("node", cty.String, "Node name."),
				opt("timeout", cty.String, "Deadline. Default 2m."),
				opt("successes", cty.Number, "Consecutive successes required. Default 3."),
				opt("version", cty.String, "The version the node must report; a healthy node on another version does not count. Default: any."),
				opt("writable", cty.Bool, "true: the node must also accept writes (not be in read-only mode). Default false: either."),
				opt("healthy_for", cty.String, "How long the node must stay healthy, every answer counting, before it counts, such as \"5s\"; a failed answer starts the time again. Default 0: the successes alone."),
			),
			Result: obj(
				req("node", cty.String, "Node name."),
				req("version", cty.String, "Version the node reports, where it reports one."),
			),
			Idempotent: true,
		},
		{
			Name:        "backup_data",
			Description: "Copies a node's data folder to a path.",
			Args: obj(
				req("node", cty.String, "Node name."),
				req("to", cty.String, "Destination folder."),
			),
			Result: obj(
				req("path", cty.String, "Destination folder written."),
				req("bytes", cty.Number, "Bytes copied."),
			),
			Idempotent: true,
		},
		{
			Name: "purge_generated",
			Description: "Empties a node's folder of generated files (caches, compiled resources: derived data the platform rebuilds on demand, never shared between nodes) inside its data folder, keeping the folder, so that a node upgraded to X+1 cannot serve what X generated. " +
				"The node must be stopped. A path that leaves the data folder or goes through a symbolic link is refused; a link inside the folder is removed, not followed. A missing folder is nothing to purge.",
			Args: obj(
				req("node", cty.String, "Node name."),
				opt("path", cty.String, "The folder, relative to the node's data folder. Default \"generated\"."),
			),
			Result: obj(
				req("node", cty.String, "The node purged."),
				req("path", cty.String, "The folder, as an absolute path on the node's host."),
				req("existed", cty.Bool, "Whether the folder was there."),
				req("removed", cty.Number, "Entries removed from the folder (its top level; a sub-folder counts once)."),
			),
			Idempotent: true,
		},
		{
			Name:        "preflight",
			Description: "Checks, changing nothing, that every node can be upgraded: it is known to the plugin and reachable, its config file can be read, its process runs as the plugin knows it (pid file), and it answers its health check, on the expected version. Every problem is reported at once.",
			Args: obj(
				req("nodes", cty.List(cty.String), "Names of the nodes to check."),
				opt("version", cty.String, "The version every node must report. Default: any, but the same on every node."),
				opt("target", cty.String, "The version the run upgrades to: a node already on it is a problem (another run got there first)."),
			),
			Result: obj(
				req("versions", cty.Map(cty.String), "The version each node reports, by node name."),
			),
			Idempotent: true,
			Probe:      true,
		},
		{
			Name:        "verify",
			Description: "Checks, changing nothing, the end state of an upgrade on every node: it runs as the plugin knows it, answers its health check on the expected version, takes writes (not read-only), has the given files in its data folder, and holds the same value as every other node for the given configuration keys. Every problem is reported at once.",
			Args: obj(
				req("nodes", cty.List(cty.String), "Names of the nodes to check."),
				req("version", cty.String, "The version every node must report."),
				opt("writable", cty.Bool, "Every node must take writes (not be in read-only mode). Default true."),
				opt("files", cty.List(cty.String), "Paths, relative to each node's data folder, that must exist (the rolling-upgrade marker)."),
				opt("same_config", cty.List(cty.String), "Configuration keys every node must hold the same value for, such as the database key: all nodes on one database. Values are compared, never shown."),
			),
			Result: obj(
				req("versions", cty.Map(cty.String), "The version each node reports, by node name."),
			),
			Idempotent: true,
			Probe:      true,
		},
	},
}

// NodeType is the part of a node that upshift itself relies on: every node of
// a node_pool has a name. Vendors read further attributes (address, data
// folder, command, ...) from the same objects.
var NodeType = cty.Object(map[string]cty.Type{"name": cty.String})

// Contract returns the standard actions of kind, keyed by name. The returned
// map is a fresh copy; the actions themselves are shared and must not be
// modified.
func Contract(kind Kind) map[string]*Action {
	out := map[string]*Action{}
	for _, a := range contracts[kind] {
		out[a.Name] = a
	}
	return out
}

// ContractAction returns one standard action, or nil.
func ContractAction(kind Kind, name string) *Action {
	for _, a := range contracts[kind] {
		if a.Name == name {
			return a
		}
	}
	return nil
}

// ContractPlugin is the schema of a plugin that implements exactly its kind's
// contract. validate and plan use it until a real plugin's schema is known.
// Its Config is nil: the contract does not say what a vendor's configuration
// holds (a real plugin's schema always has a non-nil Config).
func ContractPlugin(kind Kind) *PluginSchema {
	return &PluginSchema{Kind: kind, Actions: Contract(kind)}
}

// CheckContract reports how p falls short of its kind's contract: a missing
// standard action, an argument the contract passes that p does not accept or
// types differently, an argument p requires that the contract does not, or a
// result attribute the contract promises that p does not return.
func CheckContract(p *PluginSchema) error {
	var problems []string
	for _, want := range contracts[p.Kind] {
		got := p.Actions[want.Name]
		if got == nil {
			problems = append(problems, fmt.Sprintf("missing standard action %q", want.Name))
			continue
		}
		for _, wa := range want.Args.Attributes {
			ga := got.Args.Attribute(wa.Name)
			switch {
			case ga == nil:
				problems = append(problems, fmt.Sprintf("%s: does not accept argument %q", want.Name, wa.Name))
			case !ga.Type.Equals(wa.Type):
				problems = append(problems, fmt.Sprintf("%s: argument %q is %s, the contract says %s", want.Name, wa.Name, ga.Type.FriendlyName(), wa.Type.FriendlyName()))
			case ga.Required && !wa.Required:
				problems = append(problems, fmt.Sprintf("%s: requires argument %q, which the contract makes optional", want.Name, wa.Name))
			}
		}
		if got.Args != nil {
			for _, ga := range got.Args.Attributes {
				if ga.Required && want.Args.Attribute(ga.Name) == nil {
					problems = append(problems, fmt.Sprintf("%s: requires argument %q, which the contract does not have", want.Name, ga.Name))
				}
			}
			for _, gb := range got.Args.Blocks {
				if (gb.Required || gb.MinItems > 0) && want.Args.Block(gb.Name) == nil {
					problems = append(problems, fmt.Sprintf("%s: requires block %q, which the contract does not have", want.Name, gb.Name))
				}
			}
		}
		for _, wr := range want.Result.Attributes {
			gr := got.Result.Attribute(wr.Name)
			switch {
			case gr == nil:
				problems = append(problems, fmt.Sprintf("%s: result lacks %q", want.Name, wr.Name))
			case !gr.Type.Equals(wr.Type):
				problems = append(problems, fmt.Sprintf("%s: result %q is %s, the contract says %s", want.Name, wr.Name, gr.Type.FriendlyName(), wr.Type.FriendlyName()))
			}
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return &ContractError{Kind: p.Kind, Problems: problems}
}

// ContractError lists every way a plugin breaks its kind's contract.
type ContractError struct {
	Kind     Kind
	Problems []string
}

func (e *ContractError) Error() string {
	msg := fmt.Sprintf("plugin does not implement the %s contract:", e.Kind)
	for _, p := range e.Problems {
		msg += "\n  - " + p
	}
	return msg
}
