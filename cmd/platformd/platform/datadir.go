package platform

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Files of the data folder.
const (
	// VersionFile holds the data folder's version followed by a newline.
	VersionFile = "VERSION"
	// metaV1 is the version-1 node metadata, "key=value" lines.
	metaV1 = "meta.txt"
	// metaV2 is the version-2 node metadata, JSON; migrate converts metaV1.
	metaV2 = "meta.json"
)

// nodeMeta is what the data folder records about the node.
type nodeMeta struct {
	Format     int    `json:"format"`
	Name       string `json:"name"`
	CreatedAt  string `json:"created_at"`
	MigratedAt string `json:"migrated_at,omitempty"`
}

// DataVersion reads the version of a data folder; 0 when it has no VERSION
// file (a folder no node has started on yet).
func DataVersion(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, VersionFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read data folder version: %w", err)
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || v < 1 {
		return 0, newKindError(ErrVersionMismatch, "data folder %s: VERSION holds %q, not a version number", dir, strings.TrimSpace(string(b)))
	}
	return v, nil
}

// prepareDataDir checks the data folder at start, and initialises it on the
// first start of a version-1 node.
func prepareDataDir(cfg *Config) error {
	v, err := DataVersion(cfg.DataDir)
	if err != nil {
		return err
	}
	switch {
	case v == cfg.Version:
	case v == 0 && cfg.Version == Version1:
		return initDataDir1(cfg)
	case v == 0 || v < cfg.Version:
		return newKindError(ErrVersionMismatch, "data folder %s is at version %d, this node runs version %d: run platformd migrate first", cfg.DataDir, v, cfg.Version)
	default:
		return newKindError(ErrVersionMismatch, "data folder %s is at version %d, this node runs version %d", cfg.DataDir, v, cfg.Version)
	}
	if cfg.Version == Version2 {
		// A version-2 node depends on the migrated metadata file.
		if _, err := readMetaV2(cfg.DataDir); err != nil {
			return wrapKindError(ErrVersionMismatch, err, "data folder %s: run platformd migrate first", cfg.DataDir)
		}
	}
	return nil
}

func initDataDir1(cfg *Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	meta := fmt.Sprintf("name=%s\ncreated_at=%s\n", cfg.Name, time.Now().UTC().Format(time.RFC3339))
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, metaV1), []byte(meta)); err != nil {
		return err
	}
	// VERSION last: a folder with a VERSION file is complete.
	return writeFileAtomic(filepath.Join(cfg.DataDir, VersionFile), []byte("1\n"))
}

// migrateDataDir brings a data folder from version 1 (or nothing) to 2:
// meta.txt becomes meta.json, then VERSION becomes 2. Each file is replaced
// atomically and VERSION goes last, so an interrupted run can be run again.
func migrateDataDir(cfg *Config) error {
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	meta, err := readMetaV1(cfg.DataDir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// Already converted by an interrupted run, or never initialised.
		if m, err2 := readMetaV2(cfg.DataDir); err2 == nil {
			meta = m
		} else {
			meta = nodeMeta{Name: cfg.Name, CreatedAt: time.Now().UTC().Format(time.RFC3339)}
		}
	case err != nil:
		return err
	}
	meta.Format = Version2
	if meta.Name == "" {
		meta.Name = cfg.Name
	}
	meta.MigratedAt = time.Now().UTC().Format(time.RFC3339)
	b, err := json.MarshalIndent(meta, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(cfg.DataDir, metaV2), append(b, '\n')); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(cfg.DataDir, metaV1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", metaV1, err)
	}
	return writeFileAtomic(filepath.Join(cfg.DataDir, VersionFile), []byte("2\n"))
}

func readMetaV1(dir string) (nodeMeta, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaV1))
	if err != nil {
		return nodeMeta{}, err
	}
	m := nodeMeta{Format: Version1}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "name":
			m.Name = strings.TrimSpace(v)
		case "created_at":
			m.CreatedAt = strings.TrimSpace(v)
		}
	}
	return m, sc.Err()
}

func readMetaV2(dir string) (nodeMeta, error) {
	var m nodeMeta
	b, err := os.ReadFile(filepath.Join(dir, metaV2))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%s: %w", metaV2, err)
	}
	if m.Format != Version2 {
		return m, fmt.Errorf("%s: format %d, want 2", metaV2, m.Format)
	}
	return m, nil
}

// writeFileAtomic replaces path with data so that a reader (or a crash)
// sees either the old or the new content.
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp, 0o644)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
