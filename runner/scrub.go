// Scrubbing: a plugin's messages (its errors and progress lines) may quote
// a value it was given, and a sensitive one must not reach the console,
// the journal or an event through them. Every sensitive string the run
// knows (sensitive variables, and the sensitive arguments of the step,
// copy's dsn among them) is replaced by "(sensitive)" in what a plugin
// says.

package runner

import (
	"sort"
	"strings"

	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/schema"
)

// minSecret is the shortest value scrubbed: shorter ones ("on", "1")
// would blank out ordinary words, and are no secret worth the name.
const minSecret = 6

// sensitiveStrings collects the string leaves of v that are marked
// sensitive (anywhere under a marked value), or all of v's string leaves
// when all is set.
func sensitiveStrings(v cty.Value, all bool, out map[string]bool) {
	if v == cty.NilVal {
		return
	}
	plain, marks := v.UnmarkDeepWithPaths()
	collect := func(x cty.Value) {
		_ = cty.Walk(x, func(_ cty.Path, x cty.Value) (bool, error) {
			if x.IsKnown() && !x.IsNull() && x.Type() == cty.String {
				if s := x.AsString(); len(s) >= minSecret {
					out[s] = true
				}
			}
			return true, nil
		})
	}
	if all {
		collect(plain)
		return
	}
	for _, pvm := range marks {
		if x, err := pvm.Path.Apply(plain); err == nil {
			collect(x)
		}
	}
}

// scrubber replaces known sensitive strings, longest first (so that a
// secret containing another is hidden whole).
type scrubber []string

func newScrubber(sets ...map[string]bool) scrubber {
	var s scrubber
	seen := map[string]bool{}
	for _, set := range sets {
		for v := range set {
			if !seen[v] {
				seen[v] = true
				s = append(s, v)
			}
		}
	}
	sort.Slice(s, func(i, j int) bool { return len(s[i]) > len(s[j]) })
	return s
}

func (s scrubber) scrub(text string) string {
	for _, v := range s {
		if strings.Contains(text, v) {
			text = strings.ReplaceAll(text, v, schema.Redacted)
		}
	}
	return text
}

// variableSecrets are the values of the playbook's sensitive variables.
func (x *execution) variableSecrets() map[string]bool {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.varSecrets == nil {
		x.varSecrets = map[string]bool{}
		for _, v := range x.g.Playbook.Variables {
			if v.Sensitive && v.Value != cty.NilVal {
				sensitiveStrings(v.Value, true, x.varSecrets)
			}
		}
	}
	return x.varSecrets
}

// scrubberFor knows the sensitive strings an instance's plugin may quote:
// the sensitive variables, the arguments marked sensitive (they came from
// one, or from a sensitive result such as copy's dsn) and those its
// action's schema calls sensitive.
func (x *execution) scrubberFor(inst *StepInstance, args cty.Value) scrubber {
	own := map[string]bool{}
	sensitiveStrings(args, false, own)
	if a := inst.Step.Run.Action.Args; a != nil && args != cty.NilVal && !args.IsNull() && args.Type().IsObjectType() {
		plain, _ := args.UnmarkDeep()
		for _, at := range a.Attributes {
			if at.Sensitive && plain.Type().HasAttribute(at.Name) {
				sensitiveStrings(plain.GetAttr(at.Name), true, own)
			}
		}
	}
	return newScrubber(x.variableSecrets(), own)
}
