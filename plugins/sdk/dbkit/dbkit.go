// Package dbkit owns what database plugins share: the declaration of the
// kind's standard actions (backup, copy with its check, read_only, drop,
// check), their results, the config of a plugin that reaches a server
// (dsn, timeout), the rule for database names upshift creates, and the
// guards that make copy and drop safe: a target that exists is kept when it
// is a finished copy upshift made, replaced only when asked, and never
// dropped when it is someone else's. What a vendor does with its database
// (dumps, templates, VACUUM INTO) stays in the vendor.
package dbkit

import (
	"context"
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
// for CheckCopy copy's sdk.Action.Check).
type Database interface {
	Configure(ctx context.Context, req plugins.ConfigureRequest) error
	Backup(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Copy(ctx context.Context, r *sdk.Request) (cty.Value, error)
	CheckCopy(ctx context.Context, r *sdk.Request) (plugins.CheckResponse, error)
	ReadOnly(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Drop(ctx context.Context, r *sdk.Request) (cty.Value, error)
	Check(ctx context.Context, r *sdk.Request) (cty.Value, error)
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
		Actions: []*sdk.Action{std("backup", d.Backup), cp, std("read_only", d.ReadOnly), std("drop", d.Drop), std("check", d.Check)},
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

// KeepExisting decides what copy does about a target (where, as messages
// name it) that exists already: kept when it is a finished copy upshift
// made (ours) and replace is not set; refused, as an error on `to`, when it
// is someone else's and replace is not set; replaced otherwise (keep false,
// no error).
func KeepExisting(r *sdk.Request, where string, ours bool) (keep bool, err error) {
	replace := r.Bool("replace", false)
	switch {
	case ours && !replace:
		r.Progress("%s is already a finished copy; kept", where)
		return true, nil
	case !replace:
		return false, sdk.ArgError("to", "%s exists and is not a copy made by upshift; set replace = true to overwrite it", where)
	}
	r.Progress("replacing %s", where)
	return false, nil
}

// CheckCopy answers copy's Check from what is at the target: a finished
// copy is applied, with the result Run would return; something else there
// is unknown (Run would refuse it); nothing is not applied.
func CheckCopy(target string, exists, ours bool, result func() (cty.Value, error)) (plugins.CheckResponse, error) {
	switch {
	case exists && ours:
		res, err := result()
		return plugins.CheckResponse{State: plugins.CheckApplied, Result: res}, err
	case exists:
		return plugins.CheckResponse{State: plugins.CheckUnknown, Detail: target + " exists but is not a finished copy"}, nil
	}
	return plugins.CheckResponse{State: plugins.CheckNotApplied}, nil
}

// MayDrop is drop's guard on a target (where, as messages name it) that is
// not database A: false when there is nothing to drop, an error on `name`
// when it is not a copy upshift made.
func MayDrop(where string, exists, ours bool) (bool, error) {
	switch {
	case !exists:
		return false, nil
	case !ours:
		return false, sdk.ArgError("name", "%s was not made by upshift's copy; not dropping it", where)
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
