package dbkit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zclconf/go-cty/cty"

	"github.com/upshift-dev/upshift/plugins"
	"github.com/upshift-dev/upshift/plugins/sdk"
	"github.com/upshift-dev/upshift/schema"
)

// Messages of a database plugin never carry its password or DSN, whatever
// a driver or a tool quoted: in clear or URL-escaped, in an action's error
// (an ArgError keeps its argument), a check's detail, or Configure's error.
func TestScrubHidesKnownSecrets(t *testing.T) {
	const pw = "p@ss/w rd!"
	dsn := "postgres://app:p%40ss%2Fw%20rd%21@db:5432/a"
	secrets := func() []string { return []string{dsn, pw} }
	p := Scrub(&sdk.Plugin{
		Name: "fake", Version: "0.1.0", Kind: schema.KindDatabase, Config: &schema.Object{},
		Configure: func(context.Context, plugins.ConfigureRequest) error {
			return fmt.Errorf("cannot parse %s", dsn)
		},
		Actions: []*sdk.Action{
			{Schema: schema.ContractAction(schema.KindDatabase, "backup"), Run: func(context.Context, *sdk.Request) (cty.Value, error) {
				return cty.NilVal, sdk.ArgError("to", "pg_dump: password %q rejected", pw)
			}},
			{Schema: schema.ContractAction(schema.KindDatabase, "check"), Run: func(context.Context, *sdk.Request) (cty.Value, error) {
				return cty.NilVal, errors.New("connecting to app:p%40ss%2Fw%20rd%21@db failed")
			}},
		},
	}, secrets)

	err := p.Configure(context.Background(), plugins.ConfigureRequest{})
	require.Error(t, err)
	assert.Equal(t, "cannot parse (sensitive)", err.Error())

	_, err = p.Actions[0].Run(context.Background(), &sdk.Request{})
	require.Error(t, err)
	path, ok := sdk.ArgPath(err)
	assert.True(t, ok)
	assert.Equal(t, "to", path)
	assert.NotContains(t, err.Error(), pw)

	_, err = p.Actions[1].Run(context.Background(), &sdk.Request{})
	require.Error(t, err)
	assert.Equal(t, "connecting to app:(sensitive)@db failed", err.Error())

	assert.Equal(t, "no secret here", ScrubText("no secret here", []string{"", "ab"}), "short values are left alone")
}
