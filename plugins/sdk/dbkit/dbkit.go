// Package dbkit owns what database plugins share: the declaration of the
// kind's standard actions (backup, copy with its check, read_only, drop,
// lock, unlock, check), their results, the config of a plugin that reaches
// a server (dsn, timeout), the rule for database names upshift creates, the
// guards that make copy and drop safe (an existing target is adopted only
// when its finished-copy marker names this run, replaced only when asked,
// and never dropped when it is another run's or someone else's), and the
// cluster lock's arguments, wait and refusal message. What a vendor does
// with its database (dumps, templates, file copies, advisory locks) stays
// in the vendor.
package dbkit

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Database is a vendor's database plugin: Configure receives the config,
// and each method is the standard action of its name (sdk.Action.Run, and
// for CheckCopy copy's sdk.Action.Check); the Locker behind lock and unlock.
type Database interface {
	Configure(ctx context.Context, req plugins.ConfigureRequest) error
	Backup(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Copy(ctx context.Context, r *sdk.Request) (cty.Value, error)
	CheckCopy(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error)
	ReadOnly(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Drop(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Check(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Locker
}

// Plugin declares a database plugin whose standard actions are d's
// methods. Each call should get a fresh d: one *sdk.Plugin serves one
// configured database.
func Plugin(name, version string, config *schema.Object, d Database) *sdk.Plugin {
	std := func(action string, run func(context.Context, *sdk.Request) (cty.Value, error)) *sdk.Action {
		return &sdk.Action{Schema: schema.ContractAction(schema.KindDatabase, action), Run: run}
	}
	cp := std("copy", d.Copy)
	cp.Check = d.CheckCopy
	return &sdk.Plugin{
		Name: name, Version: version, Kind: schema.KindDatabase, Config: config, Configure: d.Configure,
		Actions: []*sdk.Action{
			std("backup", d.Backup), cp, std("read_only", d.ReadOnly), std("drop", d.Drop),
			std("lock", func(ctx context.Context, r *sdk.Request) (cty.Value, error) { return lock(ctx, r, d) }),
			std("unlock", func(ctx context.Context, r *sdk.Request) (cty.Value, error) { return unlock(ctx, r, d) }),
			std("check", d.Check),
			std("preflight", func(ctx context.Context, r *sdk.Request) (cty.Value, error) { return preflight(ctx, r, d) }),
		},
	}
}

// Result builds the result of r's standard database action.
func Result(r *sdk.Request, attrs map[string]cty.Value) (cty.Value, error) {
	return sdk.Result(schema.ContractAction(schema.KindDatabase, r.Action), attrs)
}

// Server is the config of a plugin that reaches a database server: decode
// req.Config into it with sdk.Decode.
type Server struct {
	// DSN connects to database A; it is sensitive, and never repeated in a
	// message.
	DSN string `cty:"dsn"`
	// Timeout bounds connections and statements outside dumps.
	Timeout time.Duration `cty:"timeout,positive" default:"30s"`
}

// ServerConfig is the config schema Server decodes: a required, sensitive
// dsn and an optional timeout, described in the vendor's words (the
// reference pages quote them).
func ServerConfig(dsnDescription, timeoutDescription string) *schema.Object {
	return &schema.Object{Attributes: []*schema.Attribute{
		{Name: "dsn", Type: cty.String, Required: true, Sensitive: true, Description: dsnDescription},
		{Name: "timeout", Type: cty.String, Description: timeoutDescription},
	}}
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Name checks n, a database name given as the argument attr, against what
// upshift creates: letters, digits and _, not starting with a digit, at
// most max characters (the server's own limit).
func Name(attr, n string, max int) (string, error) {
	if !identRE.MatchString(n) || len(n) > max {
		return "", sdk.ArgError(attr, "%q is not a database name upshift creates (letters, digits, _; at most %s)", n, strconv.Itoa(max))
	}
	return n, nil
}

var runIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}$`)

// RunID is r's run_id argument ("" when unset), checked: what a marker can
// record and a message quote (letters, digits and . _ : + -, at most 128).
func RunID(r *sdk.Request) (string, error) {
	id := r.String("run_id")
	if id != "" && !runIDRE.MatchString(id) {
		return "", sdk.ArgError("run_id", "%q is not a run id (letters, digits and . _ : + -, at most 128 characters)", id)
	}
	return id, nil
}

// Existing is what copy or drop finds at a target that exists.
type Existing struct {
	// Marked: the target carries the finished-copy marker of database A.
	Marked bool
	// RunID is the run the marker names; "" when it names none (a copy
	// made without run_id, or by an upshift before run ids).
	RunID string
	// Unfinished: the marker says the copy was begun and not finished (its
	// run was interrupted). Copy marks B so as soon as it creates it, when
	// it has a run id, so that the same run, resumed, makes it again.
	Unfinished bool
	// Foreign, when not "", says why the target is not upshift's to adopt,
	// replace or drop whatever its marker says, e.g. `is owned by role
	// "alice", not by "upshift", the role upshift connects as`.
	Foreign string
}

// adoptable: e is the finished copy of the run runID.
func (e Existing) adoptable(runID string) bool {
	return e.Foreign == "" && e.Marked && !e.Unfinished && e.RunID == runID
}

// redo: e is the unfinished copy of the run runID, which copy makes again.
func (e Existing) redo(runID string) bool {
	return e.Foreign == "" && e.Marked && e.Unfinished && runID != "" && e.RunID == runID
}

// what describes e for messages: "a finished copy made by run X", ...
func (e Existing) what() string {
	switch {
	case !e.Marked:
		return "is not a copy made by upshift"
	case e.Unfinished && e.RunID == "":
		return "is an unfinished copy naming no run (interrupted, or still being made)"
	case e.Unfinished:
		return fmt.Sprintf("is an unfinished copy begun by run %s (interrupted, or still being made)", e.RunID)
	case e.RunID == "":
		return "carries upshift's finished-copy marker but names no run (made without run_id, by an older upshift, or written by someone else)"
	}
	return fmt.Sprintf("is a finished copy made by run %s", e.RunID)
}

// KeepExisting decides what copy does about a target (where, as messages
// name it) that exists already: kept when it is the finished copy of this
// run (its marker names the run_id argument, both possibly empty) and
// replace is not set; refused, as an error on `to`, when it is anything
// else and replace is not set, or when it is Foreign (even with replace);
// replaced otherwise (keep false, no error).
func KeepExisting(r *sdk.Request, where string, e Existing) (keep bool, err error) {
	runID, err := RunID(r)
	if err != nil {
		return false, err
	}
	replace := r.Bool("replace", false)
	if e.Foreign != "" {
		return false, sdk.ArgError("to", "%s %s: upshift neither adopts nor replaces it. If it is a stale copy, drop it yourself; otherwise choose another `to`", where, e.Foreign)
	}
	switch {
	case e.redo(runID):
		r.Progress("%s is this run's unfinished copy (run %s, interrupted); copying again", where, runID)
		return false, nil
	case e.adoptable(runID) && !replace && runID != "":
		r.Progress("%s is this run's finished copy (run %s); kept", where, runID)
		return true, nil
	case e.adoptable(runID) && !replace:
		r.Progress("%s is a finished copy naming no run; kept (copy was given no run_id, so it cannot tell this run's copy from a stale one)", where)
		return true, nil
	case !replace && !e.Marked:
		return false, sdk.ArgError("to", "%s exists and is not a copy made by upshift; set replace = true to drop it and copy again, or choose another `to`", where)
	case !replace && runID == "":
		return false, sdk.ArgError("to", "%s exists and %s; this copy was given no run_id, so it cannot tell whether that copy is its own. Pass run_id (run.id), or set replace = true to drop it and copy A again", where, e.what())
	case !replace && e.RunID == "":
		return false, sdk.ArgError("to", "%s exists and %s, so it cannot be shown to be this run's (%s): it may be stale, without the writes made to A since. Set replace = true to drop it and copy A again, or drop it yourself", where, e.what(), runID)
	case !replace:
		return false, sdk.ArgError("to", "%s exists and %s, not by this run (%s): it may be stale, without the writes made to A since. Set replace = true to drop it and copy A again, or drop it yourself if that run is over", where, e.what(), runID)
	}
	r.Progress("replacing %s, which %s", where, e.what())
	return false, nil
}

// CheckCopy answers copy's Check from what is at the target: the finished
// copy of this run (r's run_id) is applied, with the result Run would
// return; something else there is unknown (Run would refuse or replace
// it); nothing is not applied.
func CheckCopy(r *sdk.Request, target string, exists bool, e Existing, result func() (cty.Value, error)) (plugins.CheckResponse, error) {
	runID, err := RunID(r)
	if err != nil {
		return plugins.CheckResponse{}, err
	}
	switch {
	case exists && e.adoptable(runID):
		res, err := result()
		return plugins.CheckResponse{State: plugins.CheckApplied, Result: res}, err
	case exists && e.redo(runID):
		return plugins.CheckResponse{State: plugins.CheckNotApplied, Detail: target + " is this run's unfinished copy; copy makes it again"}, nil
	case exists && e.Foreign != "":
		return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: target + " exists and " + e.Foreign}, nil
	case exists:
		return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: target + " exists and " + e.what() + ", not a finished copy of this run"}, nil
	}
	return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
}

// MayDrop is drop's guard on a target (where, as messages name it) that is
// not database A: false when there is nothing to drop; an error on `name`
// when it is Foreign, not a copy upshift made, or (r has a run_id) a copy
// whose marker does not name that run.
func MayDrop(r *sdk.Request, where string, exists bool, e Existing) (bool, error) {
	runID, err := RunID(r)
	if err != nil {
		return false, err
	}
	switch {
	case !exists:
		return false, nil
	case e.Foreign != "":
		return false, sdk.ArgError("name", "%s %s; not dropping it", where, e.Foreign)
	case !e.Marked:
		return false, sdk.ArgError("name", "%s was not made by upshift's copy; not dropping it", where)
	case runID != "" && e.RunID != runID:
		return false, sdk.ArgError("name", "%s %s, not this run's (%s); not dropping it", where, e.what(), runID)
	}
	return true, nil
}

// Dropped is drop's result, or err when there is one.
func Dropped(r *sdk.Request, dropped bool, err error) (cty.Value, error) {
	if err != nil {
		return cty.NilVal, err
	}
	return Result(r, map[string]cty.Value{"dropped": cty.BoolVal(dropped)})
}
