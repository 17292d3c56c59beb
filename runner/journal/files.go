package journal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// formatVersion is written in every snapshot; a reader refuses newer ones
// rather than misreading them. Version 2 ends the snapshot and each log
// record with a checksum and seals results; version 1 (no checksums) is
// still read, and rewritten as 2 by the next writer. Version 3 adds the
// guards' samples (samples.go); a run without any is still written as 2,
// so an older upshift reads it.
const formatVersion = 3

// state is what the files say: the run (nil if none), the last sequence
// number applied, and the log's size (non-zero means there is something to
// compact or a torn line to cut).
type state struct {
	run     *Run
	seq     uint64
	logSize int64
}

// runHeader is a Run without its steps, which writeSnapshot adds as
// already-encoded JSON.
type runHeader struct {
	ID        string    `json:"id"`
	Playbook  string    `json:"playbook"`
	Cluster   string    `json:"cluster,omitempty"`
	Digest    string    `json:"digest"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
	Status    Status    `json:"status"`
	Ending    *Ending   `json:"ending,omitempty"`
	Audit     *Audit    `json:"audit,omitempty"`
}

type snapshotIn struct {
	Version int    `json:"version"`
	Sum     string `json:"sum"`
	Seq     uint64 `json:"seq"`
	Run     *Run   `json:"run"`
}

// record is one log line. Run ties it to a run so that lines left over from
// a previous run (crash during Begin) are ignored; Seq orders lines and lets
// load skip those already folded into the snapshot (crash during compaction).
type record struct {
	Seq    uint64    `json:"seq"`
	Run    string    `json:"run"`
	At     time.Time `json:"at"`
	Step   *Step     `json:"step"`
	Sample *Sample   `json:"sample"` // a guard's sample instead of a step (format 3)
}

// marshalStep encodes s, its ResultWire sealed under key.
func marshalStep(key []byte, s *Step) ([]byte, error) {
	s, err := sealStep(key, s)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("journal: step %s: %w", s.Address, err)
	}
	return b, nil
}

// appendRecord encodes a record by hand: the step is already JSON, and this
// keeps an Update at one marshal.
// The record ends with the checksum of its own bytes.
func appendRecord(b []byte, seq uint64, idJSON []byte, at time.Time, stepJSON []byte) []byte {
	start := len(b)
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"run":`...)
	b = append(b, idJSON...)
	b = append(b, `,"at":"`...)
	b = at.AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","step":`...)
	b = append(b, stepJSON...)
	b = appendSum(b, start)
	return append(b, '\n')
}

// decodeSnapshot reads a snapshot, checking its checksum (format 2). It
// returns the run, its seq and its format.
func decodeSnapshot(path string, b []byte) (*Run, uint64, int, error) {
	var s snapshotIn
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, 0, 0, &CorruptError{Path: path, Err: err}
	}
	switch {
	case s.Version > formatVersion:
		return nil, 0, 0, fmt.Errorf("journal file %s has format %d, newer than this upshift understands (%d)", path, s.Version, formatVersion)
	case s.Version < 1:
		return nil, 0, 0, &CorruptError{Path: path, Err: errors.New("no format version")}
	case s.Version >= 2:
		body, ok := bytes.CutSuffix(b, []byte("\n"))
		if !ok {
			return nil, 0, 0, &CorruptError{Path: path, Err: errors.New("cut short (no newline at its end)")}
		}
		if err := checkSum(body); err != nil {
			return nil, 0, 0, &CorruptError{Path: path, Err: err}
		}
	}
	switch {
	case s.Run == nil || s.Run.ID == "":
		return nil, 0, 0, &CorruptError{Path: path, Err: errors.New("no run id")}
	}
	if s.Run.Steps == nil {
		s.Run.Steps = map[string]*Step{}
	}
	for addr, st := range s.Run.Steps {
		if st == nil || st.Address != addr {
			return nil, 0, 0, &CorruptError{Path: path, Err: fmt.Errorf("step %q does not match its address", addr)}
		}
	}
	return s.Run, s.Seq, s.Version, nil
}

// readState reads the snapshot and replays the log over it without changing
// either file.
func readState(snapPath, logPath string) (*state, error) {
	// The log is read first: if a writer compacts in between, the newer
	// snapshot already holds every record read, and they are skipped by seq.
	data, err := os.ReadFile(logPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("journal: %w", err)
	}
	b, err := os.ReadFile(snapPath)
	if errors.Is(err, fs.ErrNotExist) {
		if len(data) > 0 {
			return nil, &CorruptError{Path: logPath, Err: fmt.Errorf("log has records but the snapshot %s is missing", snapPath)}
		}
		return &state{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	run, seq, version, err := decodeSnapshot(snapPath, b)
	if err != nil {
		return nil, err
	}
	st := &state{run: run, seq: seq, logSize: int64(len(data))}
	for off, line := 0, 1; off < len(data); line++ {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 {
			// A line without its newline was being appended when the
			// process died; its Update never returned.
			break
		}
		text := data[off : off+nl]
		off += nl + 1
		// A record is whole when it ends with its checksum. Only the last
		// line can have been cut short, by a write that never completed
		// (e.g. power lost before fdatasync; its Update never returned);
		// a whole record that does not check, or a cut one before the
		// last, is damage done since.
		// (Format 1 had no checksums: there, a last line that does not
		// parse is the cut one.)
		last := off >= len(data)
		whole := hasSum(text)
		if !whole && last && version >= 2 {
			break
		}
		var rec record
		err := json.Unmarshal(text, &rec)
		if err == nil && (rec.Seq == 0 || (rec.Sample == nil) == (rec.Step == nil) || (rec.Step != nil && rec.Step.Address == "")) {
			err = errors.New("not a step record")
		}
		if err != nil && !whole && last {
			break
		}
		if err == nil && whole {
			err = checkSum(text)
		}
		if err != nil {
			return nil, &CorruptError{Path: logPath, Line: line, Err: err}
		}
		if rec.Run != run.ID || rec.Seq <= st.seq {
			continue // left from a previous run, or already in the snapshot
		}
		if !whole && version >= 2 {
			return nil, &CorruptError{Path: logPath, Line: line, Err: errors.New("no checksum at its end")}
		}
		if rec.Seq != st.seq+1 {
			return nil, &CorruptError{Path: logPath, Line: line, Err: fmt.Errorf("sequence %d follows %d", rec.Seq, st.seq)}
		}
		if rec.Sample != nil {
			run.Samples = append(run.Samples, *rec.Sample)
		} else {
			run.Steps[rec.Step.Address] = rec.Step
		}
		run.UpdatedAt = rec.At
		st.seq = rec.Seq
	}
	return st, nil
}

// writeSnapshot writes the run with one step per line, sorted by address:
// deterministic, readable, and the step JSON is written as encoded by Update.
func writeSnapshot(path string, hdr *Run, steps map[string]json.RawMessage, seq uint64, sync bool) error {
	head, err := json.Marshal(runHeader{
		ID: hdr.ID, Playbook: hdr.Playbook, Cluster: hdr.Cluster, Digest: hdr.Digest,
		StartedAt: hdr.StartedAt, UpdatedAt: hdr.UpdatedAt, Status: hdr.Status, Ending: hdr.Ending, Audit: hdr.Audit,
	})
	if err != nil {
		return fmt.Errorf("journal: encode %s: %w", path, err)
	}
	size := len(head) + 64
	for addr, s := range steps {
		size += len(addr) + len(s) + 8
	}
	b := make([]byte, 0, size)
	version := formatVersion
	if len(hdr.Samples) == 0 {
		version = formatWithoutSamples
	}
	b = append(b, `{"version":`...)
	b = strconv.AppendInt(b, int64(version), 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, seq, 10)
	b = append(b, `,"run":`...)
	b = append(b, head[:len(head)-1]...) // drop "}" to add the steps
	b = append(b, `,"steps":{`...)
	for i, addr := range slices.Sorted(maps.Keys(steps)) {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n"...)
		key, _ := json.Marshal(addr)
		b = append(b, key...)
		b = append(b, ':')
		b = append(b, steps[addr]...)
	}
	b = append(b, "\n}"...)
	b, err = appendSamples(b, hdr.Samples)
	if err != nil {
		return fmt.Errorf("journal: encode %s: %w", path, err)
	}
	b = append(b, '}')
	b = appendSum(b, 0)
	b = append(b, '\n')
	return writeFileAtomic(path, b, sync)
}

// writeFileAtomic replaces path with data (0600) so that a crash leaves either the
// old or the new file: temp file, fsync, rename, fsync of the directory.
func writeFileAtomic(path string, data []byte, sync bool) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
			err = fmt.Errorf("journal: write %s: %w", path, err)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if sync {
		if err = f.Sync(); err != nil {
			return err
		}
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	if sync {
		return syncDir(dir)
	}
	return nil
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err // EINVAL: the file system cannot sync directories
	}
	return nil
}

// removeTemps deletes temp files left by a crash during writeFileAtomic.
func removeTemps(dir string) {
	for _, pattern := range []string{"*.tmp*", filepath.Join(historyName, "*.tmp*")} {
		matches, _ := filepath.Glob(filepath.Join(dir, pattern))
		for _, m := range matches {
			_ = os.Remove(m)
		}
	}
}

// safeName keeps a run id usable as a file name.
func safeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			b[i] = '_'
		}
	}
	return string(b)
}
