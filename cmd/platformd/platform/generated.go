package platform

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// The generated folder: derived data the node renders on first use and
// keeps in <data_dir>/generated, rebuilt on demand when missing, never
// shared between nodes. Its files depend on the version that rendered
// them, and a node serves them as they are: after an upgrade, a file the
// old version left is a wrong answer until the folder is purged (the
// rolling-upgrade playbook's purge_generated step does it between migrate
// and start). Migrate leaves the folder alone, as a platform's own
// migration usually does with caches.
const (
	// GeneratedDir is the generated folder's name in the data folder.
	GeneratedDir = "generated"
	// ManifestFile is the manifest's file in the generated folder.
	ManifestFile = "manifest.json"
	// HeaderGenerated says whether a generated file was served from the
	// folder ("cached") or rendered for this request ("rendered").
	HeaderGenerated = "X-Platform-Generated"
)

// Manifest is GET /manifest: what this version of the platform serves,
// rendered once per node and cached in the generated folder.
type Manifest struct {
	Version    string   `json:"version"`
	Node       string   `json:"node"`
	Routes     []string `json:"routes"`
	RenderedAt string   `json:"rendered_at"`
}

// GeneratedPath is the path of a file of the node's generated folder.
func (c *Config) GeneratedPath(name string) string {
	return filepath.Join(c.DataDir, GeneratedDir, name)
}

// renderManifest is the manifest of the running version.
func (s *Server) renderManifest() Manifest {
	routes := []string{"GET /healthz", "GET /version", "GET /manifest", "GET /items", "GET /items/{id}", "POST /items", "GET /slow"}
	if s.cfg.Version >= Version2 {
		routes = append(routes, "item checksums")
	}
	return Manifest{Version: s.cfg.VersionString(), Node: s.cfg.Name, Routes: routes, RenderedAt: time.Now().UTC().Format(time.RFC3339Nano)}
}

// handleManifest serves the cached manifest, rendering and caching it
// first when the generated folder has none.
func (s *Server) handleManifest(w http.ResponseWriter, _ *http.Request) {
	path := s.cfg.GeneratedPath(ManifestFile)
	b, err := os.ReadFile(path)
	if err == nil {
		w.Header().Set(HeaderGenerated, "cached")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
		return
	}
	if !errors.Is(err, fs.ErrNotExist) {
		s.log.Error("reading the generated manifest", "path", path, "err", err)
		writeJSON(w, http.StatusInternalServerError, ErrorBody{Error: "generated", Detail: "the manifest could not be read"})
		return
	}
	b, err = json.Marshal(s.renderManifest())
	if err == nil {
		err = os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err == nil {
		err = writeFileAtomic(path, append(b, '\n'))
	}
	if err != nil {
		// Serve it anyway: the cache is an optimisation.
		s.log.Error("caching the generated manifest", "path", path, "err", fmt.Sprint(err))
	}
	w.Header().Set(HeaderGenerated, "rendered")
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}
