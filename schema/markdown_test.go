package schema

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestMarkdownMarksStandardActionsAndSecrets(t *testing.T) {
	p := ContractPlugin(KindDatabase)
	p.Config = &Object{Attributes: []*Attribute{{Name: "dsn", Type: ContractAction(KindDatabase, "backup").Args.Attributes[0].Type, Required: true, Sensitive: true, Description: "Where A is."}}}
	md := Markdown("pg", "1.0", p)
	assert.Contains(t, md, "# Plugin `pg` (database, version 1.0)")
	assert.Contains(t, md, "| `dsn` | string | yes | Where A is. *Sensitive: never shown.* |")
	assert.Contains(t, md, "## `copy` (standard database action)")
	assert.Contains(t, md, "undone by `drop` on rollback")
	assert.Contains(t, md, "Idempotent: safe to run again")
}
