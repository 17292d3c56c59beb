package platform

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
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

// AdminSocketFile is the name, inside the data folder, of the admin API's
// unix socket when the config gives no admin_listen.
const AdminSocketFile = "admin.sock"

// MinAdminTokenLen is the shortest admin token accepted.
const MinAdminTokenLen = 16

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

	// AdminListen is where the admin API listens ("admin_listen"): a
	// host:port, or a unix socket path (any value with a "/"). Default
	// <data_dir>/admin.sock. The public listener never serves /admin/.
	AdminListen string
	// AdminToken ("admin_token") or AdminTokenFile ("admin_token_file", a
	// file holding it) is the bearer token the admin API requires; one of
	// them is required when AdminListen is a TCP address. On a unix socket
	// without a token, the socket's mode (0600) is the only guard.
	// Never logged, never in an error.
	AdminToken     string
	AdminTokenFile string

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
		case "admin_listen":
			cfg.AdminListen, err = rawString(key, val)
		case "admin_token":
			// Not rawString: its error would quote the value.
			if json.Unmarshal(val, &cfg.AdminToken) != nil {
				err = newKindError(ErrConfig, "admin_token: want a string")
			}
		case "admin_token_file":
			cfg.AdminTokenFile, err = rawString(key, val)
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
	return c.validateAdmin()
}

// validateAdmin defaults admin_listen and checks the admin keys.
func (c *Config) validateAdmin() error {
	c.AdminListen = strings.TrimSpace(c.AdminListen)
	if c.AdminListen == "" {
		c.AdminListen = filepath.Join(c.DataDir, AdminSocketFile)
	}
	if c.AdminToken != "" && c.AdminTokenFile != "" {
		return newKindError(ErrConfig, "give admin_token or admin_token_file, not both")
	}
	if c.AdminToken != "" && len(strings.TrimSpace(c.AdminToken)) < MinAdminTokenLen {
		return newKindError(ErrConfig, "admin_token: want at least %d characters", MinAdminTokenLen)
	}
	if c.AdminUnix() {
		return nil
	}
	if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
		return newKindError(ErrConfig, "admin_listen %q: want host:port or a unix socket path", c.AdminListen)
	}
	if _, port, _ := net.SplitHostPort(c.AdminListen); c.AdminListen == c.Listen && port != "0" {
		return newKindError(ErrConfig, "admin_listen %s is the public listen address: the admin API needs a listener of its own", c.AdminListen)
	}
	if c.AdminToken == "" && c.AdminTokenFile == "" {
		return newKindError(ErrConfig, "admin_listen %s is a TCP address: set admin_token or admin_token_file", c.AdminListen)
	}
	return nil
}

// AdminUnix reports whether the admin API listens on a unix socket.
func (c *Config) AdminUnix() bool { return strings.Contains(c.AdminListen, "/") }

// LoadAdminToken returns the admin token: admin_token, or the content of
// admin_token_file (surrounding white space removed); "" when neither is
// set. Errors wrap ErrConfig and never hold the token.
func (c *Config) LoadAdminToken() (string, error) {
	if c.AdminTokenFile == "" {
		return strings.TrimSpace(c.AdminToken), nil
	}
	b, err := os.ReadFile(c.AdminTokenFile)
	if err != nil {
		return "", wrapKindError(ErrConfig, err, "admin_token_file")
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < MinAdminTokenLen {
		return "", newKindError(ErrConfig, "admin_token_file %s: want a token of at least %d characters", c.AdminTokenFile, MinAdminTokenLen)
	}
	return tok, nil
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
