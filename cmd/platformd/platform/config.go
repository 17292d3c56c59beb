package platform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Supported platform versions: 1 is "X", 2 is "X+1".
const (
	Version1 = 1
	Version2 = 2
	// LatestVersion is the highest version this binary can run or migrate to.
	LatestVersion = Version2
)

// Database drivers accepted in "db.driver".
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
	DriverMySQL    = "mysql"
)

// MarkerFile is the name, inside the data folder, of the file that lets a
// version-2 node start next to version-1 peers.
const MarkerFile = "rolling-upgrade"

// Config is one node's config file. The file is a flat JSON object; keys this
// package does not know are kept in Extra and otherwise ignored.
type Config struct {
	Name       string   // "name"
	Listen     string   // "listen", host:port
	Version    int      // "version": 1 or 2
	Processing bool     // "processing"
	DataDir    string   // "data_dir"
	DBDriver   string   // "db.driver": sqlite | postgres | mysql (normalised)
	DBDSN      string   // "db.dsn"
	Peers      []string // "peers": base URLs of the other nodes

	// Extra holds the keys that are not listed above, as found in the file.
	Extra map[string]json.RawMessage
}

// LoadConfig reads and validates the config file at path. Errors wrap
// ErrConfig (or ErrVersionMismatch for an unknown version).
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, wrapKindError(ErrConfig, err, "read config")
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig decodes and validates a config file's content. Values may be
// given as strings throughout (a tool edits the file key by key): processing
// as "true"/"false", version as "1" or 1, peers as a JSON list, a JSON list
// inside a string, or a comma-separated string.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, wrapKindError(ErrConfig, err, "config is not a JSON object")
	}
	if raw == nil {
		return nil, newKindError(ErrConfig, "config is not a JSON object")
	}
	cfg := &Config{Extra: map[string]json.RawMessage{}}
	var err error
	for key, val := range raw {
		if isNull(val) {
			continue
		}
		switch key {
		case "name":
			cfg.Name, err = rawString(key, val)
		case "listen":
			cfg.Listen, err = rawString(key, val)
		case "version":
			cfg.Version, err = rawVersion(val)
		case "processing":
			cfg.Processing, err = rawBool(key, val)
		case "data_dir":
			cfg.DataDir, err = rawString(key, val)
		case "db.driver":
			cfg.DBDriver, err = rawString(key, val)
		case "db.dsn":
			cfg.DBDSN, err = rawString(key, val)
		case "peers":
			cfg.Peers, err = rawPeers(val)
		default:
			cfg.Extra[key] = val
		}
		if err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Validate checks the required keys and normalises the driver name and peers.
func (c *Config) Validate() error {
	var missing []string
	for _, kv := range [][2]string{
		{"name", c.Name}, {"listen", c.Listen}, {"data_dir", c.DataDir},
		{"db.driver", c.DBDriver}, {"db.dsn", c.DBDSN},
	} {
		if strings.TrimSpace(kv[1]) == "" {
			missing = append(missing, kv[0])
		}
	}
	if c.Version == 0 {
		missing = append(missing, "version")
	}
	if len(missing) > 0 {
		return newKindError(ErrConfig, "missing required key(s): %s", strings.Join(missing, ", "))
	}
	if c.Version < Version1 || c.Version > LatestVersion {
		return newKindError(ErrVersionMismatch, "unknown version %d (this binary supports 1 and 2)", c.Version)
	}
	switch strings.ToLower(strings.TrimSpace(c.DBDriver)) {
	case "sqlite", "sqlite3":
		c.DBDriver = DriverSQLite
	case "postgres", "postgresql", "pgx":
		c.DBDriver = DriverPostgres
	case "mysql", "mariadb":
		c.DBDriver = DriverMySQL
	default:
		return newKindError(ErrConfig, "db.driver %q: want sqlite, postgres or mysql", c.DBDriver)
	}
	peers := c.Peers[:0:0]
	for _, p := range c.Peers {
		p = strings.TrimRight(strings.TrimSpace(p), "/")
		if p == "" {
			continue
		}
		if !strings.Contains(p, "://") {
			p = "http://" + p
		}
		peers = append(peers, p)
	}
	c.Peers = peers
	return nil
}

// MarkerPath is the path of the rolling-upgrade marker of this node.
func (c *Config) MarkerPath() string { return filepath.Join(c.DataDir, MarkerFile) }

// VersionString is the version as it appears in the HTTP API ("1", "2").
func (c *Config) VersionString() string { return strconv.Itoa(c.Version) }

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

func rawString(key string, v json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", newKindError(ErrConfig, "%s: want a string, got %s", key, v)
	}
	return s, nil
}

func rawVersion(v json.RawMessage) (int, error) {
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var n json.Number
		if err := json.Unmarshal(v, &n); err != nil {
			return 0, newKindError(ErrConfig, "version: want \"1\" or \"2\", got %s", v)
		}
		s = n.String()
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, newKindError(ErrVersionMismatch, "unknown version %q (this binary supports 1 and 2)", s)
	}
	if n == 0 {
		return 0, newKindError(ErrVersionMismatch, "unknown version %q (this binary supports 1 and 2)", s)
	}
	return n, nil
}

func rawBool(key string, v json.RawMessage) (bool, error) {
	var b bool
	if err := json.Unmarshal(v, &b); err == nil {
		return b, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		s = strings.TrimSpace(s)
		if s == "" {
			return false, nil
		}
		if b, err := strconv.ParseBool(s); err == nil {
			return b, nil
		}
	}
	return false, newKindError(ErrConfig, "%s: want true or false, got %s", key, v)
}

func rawPeers(v json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(v, &list); err == nil {
		return list, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, newKindError(ErrConfig, "peers: want a list of URLs, got %s", v)
	}
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		if err := json.Unmarshal([]byte(s), &list); err != nil {
			return nil, newKindError(ErrConfig, "peers: %q is not a JSON list of strings", s)
		}
		return list, nil
	}
	if s == "" {
		return nil, nil
	}
	return strings.Split(s, ","), nil
}
