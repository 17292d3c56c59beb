package platform

import (
	"errors"
	"fmt"
	"strings"
)

// Error kinds. Errors returned by this package wrap one of these so that the
// CLI can map them to an exit code (see ExitCode) and tests can match them
// with errors.Is.
var (
	// ErrConfig: the config file is missing, unreadable or invalid.
	ErrConfig = errors.New("config")
	// ErrAlreadyMigrated: migrate found the database and data folder already
	// at the target version.
	ErrAlreadyMigrated = errors.New("already migrated")
	// ErrVersionMismatch: the database schema or data folder is at a version
	// this node or migration cannot work with (too old, too new, unknown).
	ErrVersionMismatch = errors.New("version mismatch")
	// ErrConflict: a version-2 node found version-1 peers and no
	// rolling-upgrade marker. The concrete error is a *ConflictError.
	ErrConflict = errors.New("conflict")
	// ErrNotMigrated: `migrate --check` found the database or the data
	// folder below the config's version: migrate has something to do.
	ErrNotMigrated = errors.New("not migrated")
)

// Exit codes of the platformd command, part of the contract (README.md).
const (
	ExitOK              = 0
	ExitError           = 1 // anything not listed below
	ExitConfig          = 2
	ExitAlreadyMigrated = 3
	ExitConflict        = 4
	ExitVersionMismatch = 5
	// ExitCheckUnknown is `migrate --check` unable to tell (database
	// unreachable, I/O error): never 1, which there means "not migrated".
	ExitCheckUnknown = 6
)

// CheckExitCode maps the error of CheckMigrated to the exit code of
// `migrate --check`: 0 migrated, 1 not migrated, 2 config, 5 a version
// migrate refuses (empty or newer database), 6 anything else.
func CheckExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrNotMigrated):
		return ExitError
	case errors.Is(err, ErrVersionMismatch):
		return ExitVersionMismatch
	case errors.Is(err, ErrConfig):
		return ExitConfig
	default:
		return ExitCheckUnknown
	}
}

// ExitCode maps an error returned by this package to the process exit code.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, ErrAlreadyMigrated):
		return ExitAlreadyMigrated
	case errors.Is(err, ErrConflict):
		return ExitConflict
	case errors.Is(err, ErrVersionMismatch):
		return ExitVersionMismatch
	case errors.Is(err, ErrConfig):
		return ExitConfig
	default:
		return ExitError
	}
}

// ConflictError is returned when a version-2 node would start next to peers
// that still run version 1 without the rolling-upgrade marker.
type ConflictError struct {
	Peers  []string // peers that answered version 1
	Marker string   // path of the marker file that would allow the start
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("conflict: peers %s still run version 1; create %s to run alongside them",
		strings.Join(e.Peers, ", "), e.Marker)
}

// Is makes errors.Is(err, ErrConflict) true for a *ConflictError.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// kindError carries a user-facing message and an error kind without putting
// the kind's name into the message.
type kindError struct {
	kind error
	msg  string
	err  error // optional cause
}

func (e *kindError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *kindError) Unwrap() []error {
	if e.err != nil {
		return []error{e.kind, e.err}
	}
	return []error{e.kind}
}

func newKindError(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func wrapKindError(kind, cause error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...), err: cause}
}
