package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/sdk/sdktest"
)

// A health URL may carry credentials (http://admin:pw@node/health) or a
// token: the schema marks it sensitive, so plans, the journal and the
// cluster's identity never show it.
func TestHealthURLsAreSensitive(t *testing.T) {
	s, err := sdktest.Provider(t, newPlugin()).Schema(context.Background())
	require.NoError(t, err)
	a := s.Config.Attribute("health_urls")
	require.NotNil(t, a)
	assert.True(t, a.Sensitive)
}
