package runner

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
)

func TestRenderValue(t *testing.T) {
	secret := cty.StringVal("s3cret").Mark(playbooks.SensitiveMark)
	for want, v := range map[string]cty.Value{
		`1`:                                 cty.NumberIntVal(1),
		`-3`:                                cty.NumberIntVal(-3),
		`2.5`:                               cty.NumberFloatVal(2.5),
		`18446744073709551616`:              cty.MustParseNumberVal("18446744073709551616"), // past int64: hclwrite's path
		`"node-1"`:                          cty.StringVal("node-1"),
		`"$${not} a template"`:              cty.StringVal("${not} a template"),
		`["a", 2]`:                          cty.TupleVal([]cty.Value{cty.StringVal("a"), cty.NumberIntVal(2)}),
		`(sensitive)`:                       secret,
		`(sensitive, known during the run)`: cty.UnknownVal(cty.String).Mark(playbooks.SensitiveMark),
		`(known after step.copy)`:           cty.UnknownVal(cty.String),
	} {
		after := []string(nil)
		if want == `(known after step.copy)` {
			after = []string{"step.copy"}
		}
		assert.Equal(t, want, renderValue(v, false, after), "%#v", v)
	}
	assert.Equal(t, "(sensitive)", renderValue(cty.ListVal([]cty.Value{cty.StringVal("a"), secret}), false, nil), "a secret inside a list")
	assert.Equal(t, "(sensitive)", renderValue(cty.NumberIntVal(5), true, nil), "an argument the schema calls sensitive")
}
