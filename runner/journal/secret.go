// Secrets at rest and integrity of the journal files.
//
// Each journal folder has a key file (key, 0600, 32 random bytes in hex)
// made by the first writer. It keys two things:
//
//   - a step's ResultWire (the unredacted result the runner needs on resume,
//     e.g. a copy's dsn with its password) is kept sealed with AES-256-GCM,
//     the step's address as associated data; Load of a writer's Journal
//     opens it, a reader's (status) drops it;
//   - the run's Digest (playbook and variables, sensitive ones included) is
//     kept as an HMAC-SHA256 under the key, so it cannot be checked against
//     guesses offline; SameDigest compares a digest with it.
//
// Integrity does not need the key: every snapshot ends with the SHA-256 of
// what precedes it and every log record with the SHA-256 of its own bytes,
// so a truncated, bit-flipped or edited file is refused (CorruptError)
// rather than half-read. A log line cut short (no checksum at its end) is
// the one damage a crash leaves, and only the last line may have it.

package journal

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

const (
	keyName = "key"
	keyLen  = 32

	// sealedPrefix starts a sealed ResultWire (a JSON string).
	sealedPrefix = "upshift-sealed-v1:"
	// digestPrefix starts a keyed digest.
	digestPrefix = "hmac-sha256:"

	// sumField ends every snapshot and log record: `,"sum":"<64 hex>"}`.
	sumField = `,"sum":"`
	sumHex   = 2 * sha256.Size
	// sumTail is the length of `,"sum":"` + 64 hex + `"}`.
	sumTail = len(sumField) + sumHex + 2
)

func (j *Journal) keyPath() string { return filepath.Join(j.dir, keyName) }

// readKey returns the folder's key, nil when there is none yet.
func readKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != keyLen {
		return nil, &CorruptError{Path: path, Err: errors.New("not a key of 64 hex digits")}
	}
	return key, nil
}

// loadKey returns the key, reading it once; create makes it when the
// folder has none (writers only: they hold the lock). Caller holds mu or is
// the only user of j.
func (j *Journal) loadKey(create bool) ([]byte, error) {
	if j.key != nil {
		return j.key, nil
	}
	key, err := readKey(j.keyPath())
	if err != nil {
		return nil, err
	}
	if key == nil && create {
		key = make([]byte, keyLen)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("journal: %w", err)
		}
		if err := writeFileAtomic(j.keyPath(), []byte(hex.EncodeToString(key)+"\n"), !j.opts.NoSync); err != nil {
			return nil, err
		}
	}
	j.key = key
	return key, nil
}

// keyedDigest is digest under key, as kept in Run.Digest.
func keyedDigest(key []byte, digest string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(digest))
	return digestPrefix + hex.EncodeToString(m.Sum(nil))
}

// SameDigest reports whether run (loaded from this journal) was begun with
// digest. The journal keeps only a keyed hash of it; a run recorded by an
// older upshift keeps the digest itself.
func (j *Journal) SameDigest(run *Run, digest string) bool {
	if run == nil {
		return false
	}
	if !strings.HasPrefix(run.Digest, digestPrefix) {
		return run.Digest == digest
	}
	j.mu.Lock()
	key, err := j.loadKey(false)
	j.mu.Unlock()
	if err != nil || key == nil {
		return false
	}
	return hmac.Equal([]byte(run.Digest), []byte(keyedDigest(key, digest)))
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal returns plain sealed under key as a JSON string.
func seal(key []byte, addr string, plain []byte) (json.RawMessage, error) {
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := aead.Seal(nonce, nonce, plain, []byte(addr))
	return json.Marshal(sealedPrefix + base64.RawStdEncoding.EncodeToString(out))
}

// isSealed reports whether raw is a sealed value.
func isSealed(raw json.RawMessage) bool {
	return bytes.HasPrefix(raw, []byte(`"`+sealedPrefix))
}

// unseal opens a value made by seal.
func unseal(key []byte, addr string, raw json.RawMessage) (json.RawMessage, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || !strings.HasPrefix(s, sealedPrefix) {
		return nil, errors.New("not a sealed value")
	}
	data, err := base64.RawStdEncoding.DecodeString(s[len(sealedPrefix):])
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	if len(data) < aead.NonceSize() {
		return nil, errors.New("sealed value too short")
	}
	return aead.Open(nil, data[:aead.NonceSize()], data[aead.NonceSize():], []byte(addr))
}

// sealStep returns s with its ResultWire sealed (s itself is not changed).
func sealStep(key []byte, s *Step) (*Step, error) {
	if len(s.ResultWire) == 0 || isSealed(s.ResultWire) {
		return s, nil
	}
	if key == nil {
		return nil, errors.New("journal: no key to seal a result with")
	}
	sealed, err := seal(key, s.Address, s.ResultWire)
	if err != nil {
		return nil, fmt.Errorf("journal: step %s: sealing its result: %w", s.Address, err)
	}
	c := *s
	c.ResultWire = sealed
	return &c, nil
}

// openSteps opens the sealed results of run in place. A reader that is
// not to see them (open false) gets none, sealed or, from an older upshift,
// in clear. A result that does not open is an error naming the file:
// resuming without it would hand later steps a null.
func openSteps(run *Run, key []byte, open bool, keyPath string) error {
	if run == nil {
		return nil
	}
	for addr, s := range run.Steps {
		if !open {
			s.ResultWire = nil // sealed, or in clear from an older upshift
			continue
		}
		if !isSealed(s.ResultWire) {
			continue
		}
		if key == nil {
			return &CorruptError{Path: keyPath, Err: fmt.Errorf("the key file is missing, so the result of %s cannot be read; restore it from a backup, or `upshift abort` and start over", addr)}
		}
		plain, err := unseal(key, addr, s.ResultWire)
		if err != nil {
			return &CorruptError{Path: keyPath, Err: fmt.Errorf("the result of %s does not open with this key (%v); restore the key file from a backup, or `upshift abort` and start over", addr, err)}
		}
		s.ResultWire = plain
	}
	return nil
}

// appendSum ends b, a JSON object without its closing brace, with the
// checksum of what it holds since start and the brace.
func appendSum(b []byte, start int) []byte {
	sum := sha256.Sum256(b[start:])
	b = append(b, sumField...)
	b = hex.AppendEncode(b, sum[:])
	return append(b, `"}`...)
}

// hasSum reports whether b (without a trailing newline) ends with a
// checksum field: it was written whole.
func hasSum(b []byte) bool {
	n := len(b)
	return n >= sumTail && string(b[n-sumTail:n-sumTail+len(sumField)]) == sumField && string(b[n-2:]) == `"}`
}

// checkSum verifies b (ending with a checksum field, no newline).
func checkSum(b []byte) error {
	if !hasSum(b) {
		return errors.New("no checksum at its end (cut short)")
	}
	n := len(b)
	want, err := hex.DecodeString(string(b[n-sumHex-2 : n-2]))
	if err != nil {
		return errors.New("its checksum is not hex")
	}
	got := sha256.Sum256(b[:n-sumTail])
	if !bytes.Equal(want, got[:]) {
		return errors.New("checksum mismatch: the file was changed or damaged after upshift wrote it")
	}
	return nil
}
