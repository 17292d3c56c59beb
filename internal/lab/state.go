// The lab's PostgreSQL for upshift's own state (`upshift lab demo --state
// postgres`): a detached server of the lab's own in DIR/state-postgres,
// apart from the nodes' database, holding the journal and run lock as a
// team's shared server would.

package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"

	"github.com/jackc/pgx/v5"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

const (
	stateDBDir  = "state-postgres"
	stateDBName = "upshift_state"
	stateKey    = "state.key"
)

// StartStateDB starts (or finds running) the lab's state server and
// returns the environment that points upshift at it: UPSHIFT_STATE,
// UPSHIFT_STATE_DSN (no password), UPSHIFT_STATE_PASSWORD_FILE (the
// server's password file) and UPSHIFT_STATE_KEY_FILE (made once, 0600).
func StartStateDB(ctx context.Context, labDir string) ([]string, error) {
	dir := filepath.Join(labDir, stateDBDir)
	d, err := postgresd.StartDetached(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("the lab's state server: %w", err)
	}
	admin, err := pgx.Connect(ctx, d.DSN("postgres"))
	if err != nil {
		return nil, fmt.Errorf("the lab's state server: %w", err)
	}
	defer admin.Close(ctx)
	var exists bool
	if err := admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, stateDBName).Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+stateDBName); err != nil {
			return nil, err
		}
	}
	key := filepath.Join(dir, stateKey)
	if _, err := os.Stat(key); errors.Is(err, fs.ErrNotExist) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		if err := os.WriteFile(key, []byte(hex.EncodeToString(b)+"\n"), 0o600); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(d.DSN(stateDBName))
	if err != nil {
		return nil, err
	}
	u.User = url.User(d.User)
	return []string{
		"UPSHIFT_STATE=postgres",
		"UPSHIFT_STATE_DSN=" + u.String(),
		"UPSHIFT_STATE_PASSWORD_FILE=" + filepath.Join(d.Dir, "password"),
		"UPSHIFT_STATE_KEY_FILE=" + key,
	}, nil
}

// stopStateDB stops the lab's state server, if it has one running.
func stopStateDB(labDir string) (bool, error) {
	d := postgresd.DetachedAt(filepath.Join(labDir, stateDBDir))
	if !d.Running() {
		return false, nil
	}
	return true, d.Stop()
}

// removeStateDB deletes the state server's files (it must be stopped).
func removeStateDB(labDir string) error {
	dir := filepath.Join(labDir, stateDBDir)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return postgresd.DetachedAt(dir).Remove()
}
