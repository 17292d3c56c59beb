package platform

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The admin API (/admin/read-only) is served on a listener of its own
// (admin_listen), never on the public one: a load balancer forwards only
// the public port, and a browser cannot reach a unix socket. Every request
// must carry the node's admin token (Authorization: Bearer <token>) when
// one is configured, and a request with a body must be JSON, so that a
// page in a browser cannot send one with a simple (preflight-free) form
// POST.

// maxUnixPath is the longest unix socket path Linux accepts (sun_path
// less its terminating NUL).
const maxUnixPath = 107

// listenAdmin opens the admin listener. A unix socket is bound under a
// temporary name, made 0600 and then renamed into place, so that nobody
// but the node's user can ever connect to it; a stale socket left by a
// crashed node is replaced, any other file is an error.
func (s *Server) listenAdmin() (net.Listener, error) {
	addr := s.cfg.AdminListen
	if !s.cfg.AdminUnix() {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
		}
		return ln, nil
	}
	if len(addr) > maxUnixPath {
		return nil, newKindError(ErrConfig, "admin socket path %s is %d bytes long, over the %d a unix socket allows: set admin_listen", addr, len(addr), maxUnixPath)
	}
	if fi, err := os.Lstat(addr); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("admin socket %s: a file that is not a socket is in the way", addr)
		}
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("admin socket %s: another process listens on it", addr)
		}
		if err := os.Remove(addr); err != nil {
			return nil, fmt.Errorf("admin socket %s: remove the stale socket: %w", addr, err)
		}
	}
	tmp := filepath.Join(filepath.Dir(addr), "."+filepath.Base(addr)+"."+newID()[:8])
	if len(tmp) > maxUnixPath {
		tmp = addr // no room for a temporary name: bind in place, chmod at once
	}
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("admin listener on %s: %w", addr, err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false) // Serve removes addr itself
	if err := os.Chmod(tmp, 0o600); err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return nil, fmt.Errorf("admin socket %s: %w", addr, err)
	}
	if tmp != addr {
		if err := os.Rename(tmp, addr); err != nil {
			_ = ln.Close()
			_ = os.Remove(tmp)
			return nil, fmt.Errorf("admin socket %s: %w", addr, err)
		}
	}
	return ln, nil
}

// adminRoutes is the admin API: read-only mode.
func (s *Server) adminRoutes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/read-only", s.handleGetReadOnly)
	mux.HandleFunc("POST /admin/read-only", s.handleSetReadOnly)
	return s.middleware(s.adminGuard(mux))
}

// adminGuard refuses a request without the admin token (401), and one
// with a body that is not JSON (415).
func (s *Server) adminGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adminTokenSum != nil && !s.adminTokenOK(r.Header.Get("Authorization")) {
			s.log.Warn("admin request refused: missing or wrong admin token", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
			w.Header().Set("WWW-Authenticate", `Bearer realm="platformd admin"`)
			writeJSON(w, http.StatusUnauthorized, ErrorBody{Error: "unauthorized", Detail: "the admin API needs the node's admin token (Authorization: Bearer <token>)"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeJSON(w, http.StatusUnsupportedMediaType, ErrorBody{Error: "unsupported-media-type", Detail: "the admin API takes Content-Type: application/json only"})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// adminTokenOK compares the bearer token of an Authorization header with
// the node's in constant time (both hashed, so that not even the length
// is compared in variable time).
func (s *Server) adminTokenOK(header string) bool {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		tok = ""
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := subtle.ConstantTimeCompare(got[:], s.adminTokenSum) == 1
	return match && ok
}

// handleNoAdmin answers /admin/ on the public listener: not found, as if
// the admin API did not exist there.
func handleNoAdmin(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusNotFound, ErrorBody{Error: "not-found"})
}

// removeAdminSocket removes the admin socket at shutdown, if it is one.
func (s *Server) removeAdminSocket() {
	if !s.cfg.AdminUnix() {
		return
	}
	if fi, err := os.Lstat(s.cfg.AdminListen); err == nil && fi.Mode().Type() == fs.ModeSocket {
		if err := os.Remove(s.cfg.AdminListen); err != nil && !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("remove admin socket", "err", err)
		}
	}
}
