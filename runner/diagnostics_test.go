package runner

import (
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins"
)

// A plugin's diagnostics read like the playbook's own once converted: the
// argument it blames is named and, when the step writes it, pointed at;
// warnings are left out of the error.
func TestPluginDiagnosticsAsAnError(t *testing.T) {
	f, diags := hclsyntax.ParseConfig([]byte("server = \"nope\"\nweight = 3\nnested {\n  x = 1\n}\n"), "main.hcl", hcl.InitialPos)
	require.False(t, diags.HasErrors(), diags.Error())
	pd := plugins.Diagnostics{
		{Severity: plugins.Warning, Summary: "slow backend"},
		{Severity: plugins.Error, Summary: "no server named nope", Detail: "backend be has a, b", Attribute: "server"},
		{Severity: plugins.Error, Summary: "bad mode", Attribute: "mode"},
		{Severity: plugins.Error, Summary: "socket closed"},
	}
	hd := pd.HCL(f.Body)
	require.Len(t, hd, 4)
	assert.Equal(t, hcl.DiagWarning, hd[0].Severity)
	require.NotNil(t, hd[1].Subject)
	assert.Equal(t, 1, hd[1].Subject.Start.Line)
	assert.Equal(t, 10, hd[1].Subject.Start.Column, "the value, not the name")
	assert.Nil(t, hd[2].Subject, "an argument the step does not write")
	assert.Equal(t, `main.hcl:1: argument "server": no server named nope: backend be has a, b; argument "mode": bad mode; socket closed`, diagsError(hd).Error())
	assert.Equal(t, `argument "server": no server named nope: backend be has a, b; argument "mode": bad mode; socket closed`, diagsError(pd.HCL(nil)).Error())
}
