package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spf13/cobra"

	"github.com/upshift-dev/upshift/playbooks"
	"github.com/upshift-dev/upshift/runner/journal"
)

// Where a cluster's state lives: the state folder (local, the default) or
// a PostgreSQL database shared by a team and its CI. Chosen by flags, then
// -backend-config, then environment variables, so that the password and
// the sealing key are never written in a playbook nor on a command line.
const (
	stateLocal    = "local"
	statePostgres = "postgres"

	envState         = "UPSHIFT_STATE"
	envStateDSN      = "UPSHIFT_STATE_DSN"
	envStatePassword = "UPSHIFT_STATE_PASSWORD_FILE"
	envStateKey      = "UPSHIFT_STATE_KEY_FILE"
	envStateRetry    = "UPSHIFT_STATE_RETRY"
)

// stateFlags are the flags that choose the state backend.
type stateFlags struct {
	kind    string
	dsn     string
	keyFile string
	config  []string // -backend-config key=value
}

func (f *stateFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.kind, "state", "", "where state lives: \"local\" (the state folder, default) or \"postgres\" (env "+envState+")")
	cmd.Flags().StringVar(&f.dsn, "state-dsn", "", "PostgreSQL DSN of the state, without its password (env "+envStateDSN+"; the password from "+envStatePassword+", PGPASSWORD or PGPASSFILE)")
	cmd.Flags().StringVar(&f.keyFile, "state-key-file", "", "file holding the key (64 hex digits) that seals results in PostgreSQL (env "+envStateKey+")")
	cmd.Flags().StringArrayVar(&f.config, "backend-config", nil, "a state backend setting, key=value: dsn, password_file, key_file, retry (repeatable)")
}

// stateConfig is the resolved choice.
type stateConfig struct {
	postgres bool
	pg       journal.PGConfig
}

// resolve is resolveWith without a playbook's state block.
func (f *stateFlags) resolve() (*stateConfig, error) { return f.resolveWith(nil) }

// resolveWith reads the flags, -backend-config, the environment and then the
// playbook's state block (pb, nil when none), the first that says wins. A
// DSN with a password on the command line is refused: it would be seen by
// every user of the machine (ps) and kept in shell histories.
func (f *stateFlags) resolveWith(pb *playbooks.StateBlock) (*stateConfig, error) {
	if pb == nil {
		pb = &playbooks.StateBlock{}
	}
	kv := map[string]string{}
	for _, c := range f.config {
		k, v, ok := strings.Cut(c, "=")
		if !ok {
			return nil, fmt.Errorf("-backend-config takes key=value, not %q", redactConfig(c))
		}
		switch k {
		case "dsn", "password_file", "key_file", "retry":
		default:
			return nil, fmt.Errorf("-backend-config: unknown key %q (dsn, password_file, key_file, retry)", k)
		}
		kv[k] = v
	}
	retry := ""
	if pb.Retry > 0 {
		retry = pb.Retry.String()
	}
	fromBlock := map[string]string{"dsn": pb.DSN, "password_file": pb.PasswordFile, "key_file": pb.KeyFile, "retry": retry}
	pick := func(flag, key, env string) string {
		switch {
		case flag != "":
			return flag
		case kv[key] != "":
			return kv[key]
		case os.Getenv(env) != "":
			return os.Getenv(env)
		}
		return fromBlock[key]
	}
	kind := f.kind
	if kind == "" {
		kind = os.Getenv(envState)
	}
	if kind == "" && (f.dsn != "" || kv["dsn"] != "") {
		kind = statePostgres
	}
	if kind == "" {
		kind = pb.Backend
	}
	switch kind {
	case "", stateLocal:
		return &stateConfig{}, nil
	case statePostgres:
	default:
		return nil, fmt.Errorf("--state is %q or %q, not %q", stateLocal, statePostgres, kind)
	}
	for _, cl := range []string{f.dsn, kv["dsn"]} {
		if dsnHasPassword(cl) {
			return nil, fmt.Errorf("the state DSN given on the command line holds a password: give it in a file (%s or -backend-config password_file=...), PGPASSWORD or PGPASSFILE instead", envStatePassword)
		}
	}
	cfg := &stateConfig{postgres: true}
	cfg.pg.DSN = pick(f.dsn, "dsn", envStateDSN)
	if cfg.pg.DSN == "" {
		return nil, fmt.Errorf("--state postgres needs a DSN: --state-dsn, -backend-config dsn=..., %s or the playbook's state block", envStateDSN)
	}
	if p := pick("", "password_file", envStatePassword); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("the state password file: %w", err)
		}
		cfg.pg.Password = strings.TrimRight(string(b), "\r\n")
	}
	if p := pick(f.keyFile, "key_file", envStateKey); p != "" {
		key, err := readStateKey(p)
		if err != nil {
			return nil, err
		}
		cfg.pg.Key = key
	}
	if r := pick("", "retry", envStateRetry); r != "" {
		d, err := time.ParseDuration(r)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("the state retry bound %q is not a positive duration such as 60s", r)
		}
		cfg.pg.Retry = d
	}
	return cfg, nil
}

// readStateKey reads a key file: 64 hex digits, readable by its owner only
// (as ssh wants of a private key).
func readStateKey(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("the state key file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("the state key file %s is readable by others (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("the state key file: %w", err)
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("the state key file %s does not hold 64 hex digits (make one with `openssl rand -hex 32 > FILE`)", path)
	}
	return key, nil
}

// dsnHasPassword reports whether a DSN, URL or key=value, carries a
// password.
func dsnHasPassword(dsn string) bool {
	if dsn == "" {
		return false
	}
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		_, ok := u.User.Password()
		return ok || u.Query().Get("password") != ""
	}
	for _, f := range strings.Fields(dsn) {
		if strings.HasPrefix(f, "password=") {
			return true
		}
	}
	return false
}

func redactConfig(c string) string {
	if len(c) > 12 {
		return c[:12] + "..."
	}
	return c
}

// openState opens the PostgreSQL state of cfg.
func openState(ctx context.Context, cfg *stateConfig) (*journal.PGStore, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return journal.OpenPG(ctx, cfg.pg)
}

// backendUnreachable is the message of a run stopped because its state
// backend could not be reached.
func backendUnreachable(err error, resume string) string {
	return fmt.Sprintf("%s; nothing is lost: the steps that ran while it was away are found again on resume, as after a crash. Run `%s` again when it is back.", err, resume)
}

// args are the flags that chose the backend, to repeat in the commands a
// message suggests (no password: one on the command line is refused).
func (f *stateFlags) args() []string {
	var a []string
	if f.kind != "" {
		a = append(a, "--state", shellQuote(f.kind))
	}
	if f.dsn != "" {
		a = append(a, "--state-dsn", shellQuote(f.dsn))
	}
	if f.keyFile != "" {
		a = append(a, "--state-key-file", shellQuote(f.keyFile))
	}
	for _, c := range f.config {
		a = append(a, "-backend-config", shellQuote(c))
	}
	return a
}

// stopOrGone is a run's stop channel: closed by the first signal, or when
// the state backend stays unreachable past its bound (gone records why).
func stopOrGone(stop <-chan struct{}, backend <-chan error, gone *atomic.Pointer[error]) <-chan struct{} {
	out := make(chan struct{})
	go func() {
		select {
		case <-stop:
		case err := <-backend:
			gone.Store(&err)
		}
		close(out)
	}()
	return out
}

// playbookState is DIR's state block for the commands that do not load
// the playbook (status, abort, state migrate): read with the environment's
// variables only; a playbook that does not parse has none here (flags and
// environment still choose).
func playbookState(dir string) *playbooks.StateBlock {
	parsed, diags := playbooks.NewParser().Parse(dir, playbooks.LoadOptions{})
	if diags.HasErrors() {
		return nil
	}
	return parsed.State()
}

func newStateCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "state",
		Short: "Manage where clusters' state lives (the state folder or PostgreSQL)",
	}
	cmd.AddCommand(newStateMigrateCommand())
	return cmd
}

func newStateMigrateCommand() *cobra.Command {
	var sf stateFlags
	var to, stateDirFlag, only string
	cmd := &cobra.Command{
		Use:   "migrate DIR --to postgres|local",
		Short: "Move the clusters' state between the state folder and PostgreSQL, nothing lost",
		Long: `migrate moves each cluster's state (its current run with what a resume
needs, the guards' samples, how it ended, and every past run) from the state
folder of DIR (or --state-dir) into the PostgreSQL database of --state-dsn
(--to postgres), or back (--to local). Each cluster is moved under its run
lock on both sides. The source does not stay to be resumed by mistake: a
cluster's folder is moved aside to moved-to-postgres-<time>/ in the state
folder; PostgreSQL's rows are deleted once the files are written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to != statePostgres && to != stateLocal {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: --to is %q or %q.\n", statePostgres, stateLocal)
				return exitError{exitUsage}
			}
			if sf.kind == "" {
				sf.kind = statePostgres
			}
			cfg, err := sf.resolveWith(playbookState(args[0]))
			if err == nil && !cfg.postgres {
				err = errors.New("state migrate moves to or from PostgreSQL: give its DSN (--state-dsn or " + envStateDSN + ")")
			}
			if err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "Error: %s\n", err)
				return exitError{exitUsage}
			}
			store, err := journal.OpenStore(stateDir(args[0], stateDirFlag))
			if err != nil {
				return runError(cmd, err)
			}
			pg, err := openState(cmd.Context(), cfg)
			if err != nil {
				return runError(cmd, err)
			}
			defer pg.Close()
			var moved []journal.Moved
			if to == statePostgres {
				moved, err = journal.MigrateToPG(cmd.Context(), store, pg, only)
			} else {
				moved, err = journal.MigrateToLocal(cmd.Context(), pg, store, only)
			}
			out := cmd.OutOrStdout()
			for _, m := range moved {
				cur := "no current run"
				if m.Current != "" {
					cur = "current run " + m.Current
				}
				fmt.Fprintf(out, "Moved cluster %s (%s, %d past runs) to %s.", m.Cluster.Label(), cur, m.Past, map[string]string{statePostgres: "PostgreSQL at " + pg.Where(), stateLocal: store.Dir()}[to])
				if m.Aside != "" {
					fmt.Fprintf(out, " Its folder is kept, untouched, in %s.", m.Aside)
				}
				fmt.Fprintln(out)
			}
			if err != nil {
				var held *journal.HeldError
				if errors.As(err, &held) {
					return lockError(cmd, err)
				}
				return runError(cmd, err)
			}
			if len(moved) == 0 {
				fmt.Fprintln(out, "No cluster to move.")
			}
			return nil
		},
	}
	sf.register(cmd)
	cmd.Flags().StringVar(&to, "to", "", "where the state goes: postgres or local")
	cmd.Flags().StringVar(&stateDirFlag, "state-dir", "", "state folder (default DIR/.upshift/state)")
	cmd.Flags().StringVar(&only, "cluster", "", "move only the cluster whose id starts with this")
	return cmd
}
