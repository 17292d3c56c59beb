// The identity of the cluster a playbook points at: what makes a run belong
// to a cluster rather than to the folder it was started from.

package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/journal"
	"github.com/upshift-dev/upshift/schema"
)

// Identify derives the identity of the cluster pb's resources point at:
// for each resource its kind, plugin, configuration and, for a node pool,
// each node's name and address. Values a run may change without changing
// the cluster (a node's commands, a step's arguments, the variables steps
// use) are not part of it, so a failed run resumes after its cause is
// fixed; the same resources give the same identity on any machine.
//
// The playbook's name for the cluster (its top-level `cluster`) is kept
// beside the identity, for people; it is not part of it.
//
// A sensitive value (an attribute the plugin's schema marks sensitive, or
// a value from a sensitive variable) never enters it in clear: a connection
// string enters with its password removed (URL, key=value and
// user:password@ forms), and any other sensitive value is left out.
func Identify(pb *playbooks.Playbook) *journal.Cluster {
	c := &journal.Cluster{Name: pb.ClusterName}
	h := sha256.New()
	for _, addr := range pb.ResourceNames() {
		r := pb.Resources[addr]
		cr := journal.ClusterResource{Address: addr, Kind: string(r.Kind), Plugin: r.PluginName, Fields: map[string]string{}}
		var cfg *schema.Object
		if r.Schema != nil {
			cfg = r.Schema.Config
		}
		flatten(cr.Fields, "config", r.Config, cfg, false)
		if r.Kind == schema.KindNodePool {
			nodeFields(cr.Fields, r.Nodes)
		}
		fmt.Fprintf(h, "resource %q kind %q plugin %q\n", addr, cr.Kind, cr.Plugin)
		keys := make([]string, 0, len(cr.Fields))
		for k := range cr.Fields {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(h, "  %q = %q\n", k, cr.Fields[k])
		}
		c.Resources = append(c.Resources, cr)
	}
	c.ID = hex.EncodeToString(h.Sum(nil))
	return c
}

// flatten adds v's scalar values under prefix ("config.socket",
// "config.header[0].name"), following o's sensitivity.
func flatten(out map[string]string, prefix string, v cty.Value, o *schema.Object, sensitive bool) {
	if v == cty.NilVal {
		return
	}
	if v.IsMarked() {
		sensitive = true
		v, _ = v.UnmarkDeep()
	}
	if !v.IsKnown() || v.IsNull() {
		return
	}
	ty := v.Type()
	switch {
	case ty.IsObjectType() || ty.IsMapType():
		for it := v.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			name := k.AsString()
			sens, sub := sensitive, (*schema.Object)(nil)
			if o != nil {
				if a := o.Attribute(name); a != nil && a.Sensitive {
					sens = true
				}
				if b := o.Block(name); b != nil {
					sub = b.Object
				}
			}
			flatten(out, prefix+"."+name, ev, sub, sens)
		}
	case ty.IsListType() || ty.IsTupleType() || ty.IsSetType():
		i := 0
		for it := v.ElementIterator(); it.Next(); i++ {
			_, ev := it.Element()
			flatten(out, fmt.Sprintf("%s[%d]", prefix, i), ev, o, sensitive)
		}
	default:
		s := scalar(v)
		if sensitive {
			stripped, ok := withoutCredentials(s)
			if !ok {
				return // cannot tell what in it is secret: left out
			}
			s = stripped + " (password removed)"
		}
		out[prefix] = s
	}
}

func scalar(v cty.Value) string {
	switch v.Type() {
	case cty.String:
		return v.AsString()
	case cty.Bool:
		return fmt.Sprint(v.True())
	case cty.Number:
		return v.AsBigFloat().Text('g', -1)
	}
	return v.GoString()
}

// nodeFields adds each node's address under its name: a node is the same
// node as long as its name and address are, whatever commands or paths the
// playbook gives it.
func nodeFields(out map[string]string, nodes cty.Value) {
	if nodes == cty.NilVal {
		return
	}
	nodes, _ = nodes.UnmarkDeep()
	if nodes.IsNull() || !nodes.IsKnown() || !nodes.CanIterateElements() {
		return
	}
	for it := nodes.ElementIterator(); it.Next(); {
		_, n := it.Element()
		if n.IsNull() || !n.IsKnown() || !(n.Type().IsObjectType() || n.Type().IsMapType()) {
			continue
		}
		attr := func(name string) string {
			if n.Type().IsObjectType() && n.Type().HasAttribute(name) || n.Type().IsMapType() && n.HasIndex(cty.StringVal(name)).True() {
				var a cty.Value
				if n.Type().IsObjectType() {
					a = n.GetAttr(name)
				} else {
					a = n.Index(cty.StringVal(name))
				}
				if a.IsKnown() && !a.IsNull() && a.Type().IsPrimitiveType() {
					return scalar(a)
				}
			}
			return ""
		}
		name := attr("name")
		if name == "" {
			continue
		}
		var where []string
		for _, k := range []string{"address", "host", "port"} {
			if v := attr(k); v != "" {
				where = append(where, v)
			}
		}
		out["nodes."+name] = strings.Join(where, " ")
	}
}

var (
	// user:password@tcp(host)/db, the go-sql-driver form.
	userPassAt = regexp.MustCompile(`^([^:@/\s]*):[^@\s]*@`)
	// password=secret or password='it''s' in a key=value string.
	keyValuePassword = regexp.MustCompile(`(?i)\bpassword\s*=\s*('(?:[^'\\]|\\.)*'|\S+)`)
)

// withoutCredentials removes the password from a connection string, and
// says whether it found one: a value without a recognisable password may
// be a secret as a whole.
func withoutCredentials(s string) (string, bool) {
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", false
		}
		found := false
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				found = true
			}
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		for k := range q {
			if strings.EqualFold(k, "password") {
				q.Del(k)
				found = true
			}
		}
		u.RawQuery = q.Encode()
		return u.String(), found
	}
	if keyValuePassword.MatchString(s) {
		return strings.Join(strings.Fields(keyValuePassword.ReplaceAllString(s, "")), " "), true
	}
	if userPassAt.MatchString(s) {
		return userPassAt.ReplaceAllString(s, "$1@"), true
	}
	return "", false
}
