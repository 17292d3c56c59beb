// The state folder as a whole: one sub-folder per cluster, each with its
// own journal, lock, history and plugin log, so that a run belongs to the
// cluster it changed and never to the folder it was started from.

package journal

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Cluster is the identity of a cluster: what its resources point at. ID is
// a SHA-256 over the resources' fields; two runs are of the same cluster
// exactly when their IDs are equal. Fields never hold a sensitive value in
// clear (the runner leaves them out, or keeps only their non-secret part).
type Cluster struct {
	ID string `json:"id"`
	// Name is the playbook's name for the cluster (its top-level
	// `cluster`), "" when it gives none. It names, it does not identify.
	Name      string            `json:"name,omitempty"`
	Resources []ClusterResource `json:"resources"`
}

// ClusterResource is one resource's part of a cluster's identity.
type ClusterResource struct {
	Address string `json:"address"` // e.g. "load_balancer.front"
	Kind    string `json:"kind"`
	Plugin  string `json:"plugin"`
	// Fields are the flattened values that identify it, e.g.
	// "config.socket" = "/run/haproxy.sock", "nodes.node-1" = "10.0.0.1:80".
	Fields map[string]string `json:"fields"`
}

// clusterShortLen is how many hex digits of the ID name a cluster: its
// folder and what people read. 48 bits: no two clusters of one state
// folder collide in practice, and the full ID is checked anyway.
const clusterShortLen = 12

// Short is the ID as shown and as the cluster's folder is named.
func (c *Cluster) Short() string {
	if len(c.ID) <= clusterShortLen {
		return c.ID
	}
	return c.ID[:clusterShortLen]
}

// Label is how messages name the cluster: "prod-eu (3f2a9c1d0b7e)", or
// the short ID alone when the playbook gives no name.
func (c *Cluster) Label() string {
	if c.Name == "" {
		return c.Short()
	}
	return c.Name + " (" + c.Short() + ")"
}

// Describe says in one line what the cluster is made of, e.g.
// "load_balancer.front (haproxy), database.main (sqlite), node_pool.cluster
// (process, 3 nodes)".
func (c *Cluster) Describe() string {
	var parts []string
	for _, r := range c.Resources {
		nodes := 0
		for k := range r.Fields {
			if strings.HasPrefix(k, "nodes.") {
				nodes++
			}
		}
		p := r.Plugin
		if nodes > 0 {
			p += fmt.Sprintf(", %d nodes", nodes)
		}
		parts = append(parts, fmt.Sprintf("%s (%s)", r.Address, p))
	}
	return strings.Join(parts, ", ")
}

// Diff lists what differs between two clusters, one line per field, e.g.
// `load_balancer.front config.socket: "/a" here, "/b" there`. Empty when
// they are described alike.
func Diff(a, b *Cluster) []string {
	byAddr := func(c *Cluster) map[string]ClusterResource {
		m := map[string]ClusterResource{}
		for _, r := range c.Resources {
			m[r.Address] = r
		}
		return m
	}
	ma, mb := byAddr(a), byAddr(b)
	addrs := map[string]bool{}
	for k := range ma {
		addrs[k] = true
	}
	for k := range mb {
		addrs[k] = true
	}
	var out []string
	for _, addr := range sortedSet(addrs) {
		ra, oka := ma[addr]
		rb, okb := mb[addr]
		switch {
		case !oka:
			out = append(out, fmt.Sprintf("%s: only in %s", addr, b.Short()))
			continue
		case !okb:
			out = append(out, fmt.Sprintf("%s: only in %s", addr, a.Short()))
			continue
		}
		if ra.Plugin != rb.Plugin {
			out = append(out, fmt.Sprintf("%s plugin: %q in %s, %q in %s", addr, ra.Plugin, a.Short(), rb.Plugin, b.Short()))
		}
		keys := map[string]bool{}
		for k := range ra.Fields {
			keys[k] = true
		}
		for k := range rb.Fields {
			keys[k] = true
		}
		for _, k := range sortedSet(keys) {
			va, oka := ra.Fields[k]
			vb, okb := rb.Fields[k]
			switch {
			case oka && okb && va == vb:
			case !oka:
				out = append(out, fmt.Sprintf("%s %s: unset in %s, %q in %s", addr, k, a.Short(), vb, b.Short()))
			case !okb:
				out = append(out, fmt.Sprintf("%s %s: %q in %s, unset in %s", addr, k, va, a.Short(), b.Short()))
			default:
				out = append(out, fmt.Sprintf("%s %s: %q in %s, %q in %s", addr, k, va, a.Short(), vb, b.Short()))
			}
		}
	}
	return out
}

func sortedSet(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// File and folder names of a state folder.
const (
	clustersName = "clusters"
	clusterName  = "cluster.json"
	// LogName is the plugins' log, at the top of the state folder.
	LogName = "upshift.log"
)

// Store is a state folder (DIR/.upshift/state, or --state-dir):
//
//	upshift.log                        the plugins' log, every run's
//	clusters/<short id>/cluster.json   the cluster's identity
//	clusters/<short id>/run.json, run.log, history/, lock, lock.owner
//
// A state folder written by an upshift from before clusters had folders
// holds run.json, run.log, history/ and lock at its top: that is Legacy.
type Store struct {
	dir string
}

// OpenStore returns the state folder dir, creating it (0700) if needed.
func OpenStore(dir string) (*Store, error) {
	if dir == "" {
		return nil, errors.New("journal: empty state directory")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &Store{dir: dir}, nil
}

// Dir is the state folder.
func (s *Store) Dir() string { return s.dir }

// ClusterDir is the folder of cluster c (its journal, lock and log).
func (s *Store) ClusterDir(c *Cluster) string {
	return filepath.Join(s.dir, clustersName, safeName(c.Short()))
}

// MismatchError: the folder of a cluster's short ID holds another cluster
// (the short IDs collide, or its cluster.json was edited). Nothing is read
// from, or written to, that folder's journal.
type MismatchError struct {
	Dir        string
	Want, Have *Cluster
}

func (e *MismatchError) Error() string {
	msg := fmt.Sprintf("the journal in %s belongs to cluster %s, not to this cluster %s; it is left alone", e.Dir, e.Have.ID, e.Want.ID)
	if d := Diff(e.Have, e.Want); len(d) > 0 {
		msg += ". They differ in:\n  " + strings.Join(d, "\n  ")
	}
	return msg
}

// Register makes c's folder (writing its cluster.json the first time) and
// returns it. The folder of another cluster with the same short ID is a
// *MismatchError.
func (s *Store) Register(c *Cluster) (string, error) {
	dir := s.ClusterDir(c)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	have, err := readCluster(filepath.Join(dir, clusterName))
	switch {
	case err == nil:
		if have.ID != c.ID {
			return "", &MismatchError{Dir: dir, Want: c, Have: have}
		}
		if have.Name == c.Name {
			return dir, nil
		}
		// Renamed by the playbook: the same cluster, under its new name.
	case !errors.Is(err, fs.ErrNotExist):
		return "", err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(dir, clusterName), append(b, '\n'), true); err != nil {
		return "", err
	}
	return dir, nil
}

func readCluster(path string) (*Cluster, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(b, &c); err != nil || c.ID == "" {
		if err == nil {
			err = errors.New("no cluster id")
		}
		return nil, &CorruptError{Path: path, Err: err}
	}
	return &c, nil
}

// Current returns cluster c's current run, or nil, without making its
// folder or taking its lock (a read, safe while a run writes).
func (s *Store) Current(c *Cluster) (*Run, error) {
	return (&Journal{dir: s.ClusterDir(c)}).Load()
}

// ClusterState is what a state folder holds of one cluster.
type ClusterState struct {
	Cluster *Cluster
	Dir     string
	// Current is the run in its journal (nil when none has begun): the
	// last finished one, or the one to resume.
	Current *Run
	// History lists the archived runs' files, oldest first.
	History []string
	// Past are the finished runs before Current, oldest first, for a
	// backend that keeps no files (PostgreSQL); nil for a state folder.
	Past []*Run
}

// Unfinished reports whether the cluster has a run to resume.
func (c *ClusterState) Unfinished() bool {
	return c.Current != nil && c.Current.Resumable()
}

// Clusters returns every cluster of the state folder, the most recently
// updated first.
func (s *Store) Clusters() ([]*ClusterState, error) {
	dirs, err := filepath.Glob(filepath.Join(s.dir, clustersName, "*", clusterName))
	if err != nil {
		return nil, err
	}
	var out []*ClusterState
	for _, p := range dirs {
		c, err := readCluster(p)
		if err != nil {
			return nil, err
		}
		dir := filepath.Dir(p)
		j := &Journal{dir: dir}
		run, err := j.Load()
		if err != nil {
			return nil, err
		}
		hist, err := j.History()
		if err != nil {
			return nil, err
		}
		out = append(out, &ClusterState{Cluster: c, Dir: dir, Current: run, History: hist})
	}
	sort.SliceStable(out, func(i, k int) bool {
		return updated(out[i]).After(updated(out[k]))
	})
	return out, nil
}

func updated(c *ClusterState) time.Time {
	if c.Current == nil {
		return time.Time{}
	}
	return c.Current.UpdatedAt
}

// Resumable reports whether a run is to be resumed rather than begun anew:
// it neither finished nor was given up.
func (r *Run) Resumable() bool {
	return r.Status != Done && r.Status != Aborted
}

// Legacy returns the run an upshift from before cluster folders left at the
// top of the state folder, or nil.
func (s *Store) Legacy() (*Run, error) {
	j := &Journal{dir: s.dir}
	run, err := j.Load()
	if err != nil {
		return nil, err
	}
	if run == nil {
		if h, _ := j.History(); len(h) > 0 {
			// Only archived runs: nothing to resume, but still not keyed.
			return LoadFile(h[len(h)-1])
		}
	}
	return run, nil
}

// legacyEntries are what an older upshift kept at the top of a state
// folder. Its lock file stays (a running older upshift may hold it), and so
// does upshift.log, which every run of the folder appends to.
var legacyEntries = []string{snapshotName, logName, historyName, keyName}

// AdoptLegacy moves the legacy journal (run, log, history, plugin log) into
// cluster c's folder, which must hold no run yet, and records c in it. The
// caller holds the legacy lock (Acquire on the state folder).
func (s *Store) AdoptLegacy(c *Cluster) (string, error) {
	dir, err := s.Register(c)
	if err != nil {
		return "", err
	}
	if run, err := (&Journal{dir: dir}).Load(); err != nil {
		return "", err
	} else if run != nil {
		return "", fmt.Errorf("cluster %s already has a journal in %s; move the older one (%s) aside by hand", c.Short(), dir, s.dir)
	}
	if err := s.moveLegacy(dir); err != nil {
		return "", err
	}
	// Its run names no cluster: the runner takes it as this one's.
	return dir, nil
}

// SetAsideLegacy moves the legacy journal into legacy-<time>/ in the state
// folder, untouched, and returns that folder. The caller holds the legacy
// lock.
func (s *Store) SetAsideLegacy() (string, error) {
	dir := filepath.Join(s.dir, "legacy-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("journal: %w", err)
	}
	return dir, s.moveLegacy(dir)
}

func (s *Store) moveLegacy(to string) error {
	for _, name := range legacyEntries {
		from := filepath.Join(s.dir, name)
		if _, err := os.Lstat(from); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := os.Rename(from, filepath.Join(to, name)); err != nil {
			return fmt.Errorf("journal: moving the older journal: %w", err)
		}
	}
	if err := syncDir(to); err != nil {
		return err
	}
	return syncDir(s.dir)
}
