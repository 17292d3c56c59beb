package platform

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseConfig(t *testing.T) {
	full := `{
		"name": "node-1", "listen": "127.0.0.1:18081", "version": "1", "processing": true,
		"data_dir": "/tmp/lab/node-1/data", "db.driver": "sqlite", "db.dsn": "/tmp/lab/db/a.sqlite",
		"peers": ["http://127.0.0.1:18082", "127.0.0.1:18083/"], "owner": {"team": "x"}
	}`
	cfg, err := ParseConfig([]byte(full))
	require.NoError(t, err)
	assert.Equal(t, "node-1", cfg.Name)
	assert.Equal(t, "127.0.0.1:18081", cfg.Listen)
	assert.Equal(t, 1, cfg.Version)
	assert.True(t, cfg.Processing)
	assert.Equal(t, DriverSQLite, cfg.DBDriver)
	assert.Equal(t, []string{"http://127.0.0.1:18082", "http://127.0.0.1:18083"}, cfg.Peers)
	assert.JSONEq(t, `{"team":"x"}`, string(cfg.Extra["owner"]))
	assert.Equal(t, "/tmp/lab/node-1/data/rolling-upgrade", cfg.MarkerPath())

	base := `"name":"n","listen":"127.0.0.1:1","data_dir":"/d","db.dsn":"x"`
	for _, tc := range []struct {
		name       string
		json       string
		version    int
		processing bool
		driver     string
		peers      []string
	}{
		{"strings throughout", `{` + base + `,"version":"2","processing":"true","db.driver":"postgresql","peers":"[\"http://a:1\"]"}`, 2, true, DriverPostgres, []string{"http://a:1"}},
		{"numeric version", `{` + base + `,"version":2,"processing":"false","db.driver":"mariadb","peers":"http://a:1, http://b:2"}`, 2, false, DriverMySQL, []string{"http://a:1", "http://b:2"}},
		{"processing absent, null peers", `{` + base + `,"version":"1","db.driver":"sqlite","peers":null}`, 1, false, DriverSQLite, nil},
		{"empty peers string", `{` + base + `,"version":"1","processing":"","db.driver":"sqlite","peers":""}`, 1, false, DriverSQLite, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseConfig([]byte(tc.json))
			require.NoError(t, err)
			assert.Equal(t, tc.version, cfg.Version)
			assert.Equal(t, tc.processing, cfg.Processing)
			assert.Equal(t, tc.driver, cfg.DBDriver)
			assert.Equal(t, tc.peers, cfg.Peers)
		})
	}

	for _, tc := range []struct {
		name, json string
		kind       error
		msg        string
	}{
		{"not json", `name=x`, ErrConfig, "not a JSON object"},
		{"missing keys", `{"name":"n"}`, ErrConfig, "missing required key(s): listen, data_dir, db.driver, db.dsn, version"},
		{"unknown version", `{` + base + `,"version":"3","db.driver":"sqlite"}`, ErrVersionMismatch, "unknown version 3"},
		{"bad processing", `{` + base + `,"version":"1","db.driver":"sqlite","processing":"maybe"}`, ErrConfig, "processing: want true or false"},
		{"bad driver", `{` + base + `,"version":"1","db.driver":"oracle"}`, ErrConfig, `db.driver "oracle"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(tc.json))
			require.ErrorIs(t, err, tc.kind)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestLoadConfig(t *testing.T) {
	_, err := LoadConfig(filepath.Join(t.TempDir(), "missing.json"))
	require.ErrorIs(t, err, ErrConfig)
	assert.Equal(t, ExitConfig, ExitCode(err))

	p := filepath.Join(t.TempDir(), "c.json")
	require.NoError(t, os.WriteFile(p, []byte(`{"name":"n","listen":"127.0.0.1:1","version":"2","data_dir":"/d","db.driver":"sqlite","db.dsn":"x"}`), 0o644))
	cfg, err := LoadConfig(p)
	require.NoError(t, err)
	assert.Equal(t, 2, cfg.Version)
}
