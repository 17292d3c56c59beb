package schema

import (
	"flag"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var updateDocs = flag.Bool("update-docs", false, "rewrite the contracts section of docs/language.md")

const (
	contractsBegin = "<!-- contracts: generated from schema/contract.go by TestLanguageDocHasTheContracts; -update-docs rewrites it -->\n"
	contractsEnd   = "<!-- contracts: end -->\n"
)

// TestLanguageDocHasTheContracts keeps the standard-action reference in
// docs/language.md equal to the contracts themselves, so a new action or
// argument cannot be left out of the page (go test ./schema -update-docs
// rewrites it).
func TestLanguageDocHasTheContracts(t *testing.T) {
	const path = "../docs/language.md"
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	doc := string(b)
	i, j := strings.Index(doc, contractsBegin), strings.Index(doc, contractsEnd)
	require.True(t, i >= 0 && j > i, "docs/language.md has no contracts markers")
	want := doc[:i+len(contractsBegin)] + ContractsMarkdown() + doc[j:]
	if *updateDocs {
		require.NoError(t, os.WriteFile(path, []byte(want), 0o644))
		return
	}
	require.Equal(t, want, doc, "docs/language.md is behind schema/contract.go: run go test ./schema -update-docs")
}
