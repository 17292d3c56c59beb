package playbooks_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/playbooks"
)

// TestPlanStringsAsHCL: a plan shows a string argument as hclwrite writes
// it, whether it needs escaping or not (plain strings skip hclwrite).
func TestPlanStringsAsHCL(t *testing.T) {
	values := []string{"", "db.dsn", "/var/lib/a b/c.sqlite", `say "hi"`, `C:\dir`, "tab\there", "line\nbreak",
		"a ${literal}", "a %{literal}", "$5 and 100%", "héllo", "\x7f", "~!@#&*()_+={}[]|;:',.<>?/`"}
	for _, v := range values {
		src := `
node_pool "cluster" {
  plugin = "process"
  nodes  = [{ name = "a" }, { name = "b" }]
}
variable "v" {
  type = string
}
step "point" {
  run = node_pool.cluster.set_config
  with {
    node  = "a"
    key   = "k"
    value = var.v
  }
}
`
		dir := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(dir, "main.hcl"), []byte(src), 0o644))
		_, plan, diags := check(t, dir, playbooks.LoadOptions{Vars: []string{"v=" + v}, Env: []string{}})
		require.False(t, diags.HasErrors(), diags.Error())
		var text bytes.Buffer
		require.NoError(t, plan.WriteText(&text))
		want := "value = " + strings.TrimSpace(string(hclwrite.TokensForValue(cty.StringVal(v)).Bytes()))
		assert.Contains(t, text.String(), want, "for %q", v)
	}
}
