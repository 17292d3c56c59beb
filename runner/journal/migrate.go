// Moving a cluster's state between a state folder and PostgreSQL
// (`upshift state migrate`): its current run, with the results a resume
// needs, its samples and ending, and every past run, so that nothing is
// lost either way. The source is not left to be resumed by mistake: a
// state folder's cluster folder is moved aside (moved-to-postgres-<time>/),
// PostgreSQL's rows are deleted once the files are durable.

package journal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Moved is one cluster moved by MigrateToPG or MigrateToLocal.
type Moved struct {
	Cluster *Cluster
	Current string // the current run's id, "" when none
	Past    int    // how many past runs
	// Aside is where the source was moved aside (a state folder's
	// cluster folder), "" when it was deleted (PostgreSQL's rows).
	Aside string
}

// MigrateToPG moves the clusters of the state folder (those whose ID
// starts with prefix, every one when it is "") into pg, which must hold no
// run of them yet. Each cluster is moved under both its locks.
func MigrateToPG(ctx context.Context, store *Store, pg *PGStore, prefix string) ([]Moved, error) {
	if pg.cfg.Key == nil {
		return nil, errors.New("journal: no state key: the results a resume needs are sealed in PostgreSQL under the key of UPSHIFT_STATE_KEY_FILE")
	}
	all, err := store.Clusters()
	if err != nil {
		return nil, err
	}
	var out []Moved
	for _, cs := range all {
		if !strings.HasPrefix(cs.Cluster.ID, prefix) {
			continue
		}
		m, err := migrateOneToPG(ctx, store, pg, cs)
		if err != nil {
			return out, fmt.Errorf("cluster %s: %w", cs.Cluster.Label(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

func migrateOneToPG(ctx context.Context, store *Store, pg *PGStore, cs *ClusterState) (Moved, error) {
	m := Moved{Cluster: cs.Cluster}
	flock, err := Acquire(cs.Dir, CurrentOwner("upshift state migrate --to postgres"))
	if err != nil {
		return m, err
	}
	defer flock.Release()
	if err := pg.Register(ctx, cs.Cluster); err != nil {
		return m, err
	}
	plock, err := pg.Acquire(ctx, cs.Cluster, CurrentOwner("upshift state migrate --to postgres"))
	if err != nil {
		return m, err
	}
	defer plock.Release()
	// Read under the lock, with the results a resume needs.
	cur, err := (&Journal{dir: cs.Dir, open: true}).Load()
	if err != nil {
		return m, err
	}
	var past []*Run
	for _, h := range cs.History {
		r, err := LoadFile(h)
		if err != nil {
			return m, err
		}
		past = append(past, r)
	}
	err = pgx.BeginFunc(ctx, pg.pool, func(tx pgx.Tx) error {
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM upshift_runs WHERE cluster_id = $1`, cs.Cluster.ID).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("PostgreSQL at %s already holds %d runs of this cluster; nothing was moved", pg.where, n)
		}
		for _, r := range past {
			if err := pg.importRun(ctx, tx, cs.Cluster.ID, r, false); err != nil {
				return err
			}
		}
		if cur != nil {
			return pg.importRun(ctx, tx, cs.Cluster.ID, cur, true)
		}
		return nil
	})
	if err != nil {
		return m, pg.scrub(err)
	}
	m.Past = len(past)
	if cur != nil {
		m.Current = cur.ID
	}
	// The folder goes aside, lock and all (we hold it: a run started now
	// waits on the same file, then finds no journal of its cluster here).
	aside := filepath.Join(store.Dir(), "moved-to-postgres-"+time.Now().UTC().Format("20060102T150405Z"))
	if err := os.MkdirAll(aside, 0o700); err != nil {
		return m, fmt.Errorf("journal: %w", err)
	}
	m.Aside = filepath.Join(aside, filepath.Base(cs.Dir))
	if err := os.Rename(cs.Dir, m.Aside); err != nil {
		return m, fmt.Errorf("journal: the state is in PostgreSQL now, but moving %s aside failed (move it by hand so that no run resumes it): %w", cs.Dir, err)
	}
	return m, syncDir(filepath.Dir(cs.Dir))
}

// importRun inserts run (results in clear, as Load of a writer gives
// them) into PostgreSQL, sealing its results under the store's key.
func (s *PGStore) importRun(ctx context.Context, tx pgx.Tx, cluster string, run *Run, current bool) error {
	header, err := headerJSON(run)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO upshift_runs (cluster_id, run_id, current, status, started_at, updated_at, header) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
		cluster, run.ID, current, string(run.Status), run.StartedAt, run.UpdatedAt, header); err != nil {
		return err
	}
	steps, err := encodeSteps(s.cfg.Key, run.Steps)
	if err != nil {
		return err
	}
	rows := make([][]any, 0, len(steps))
	for addr, b := range steps {
		rows = append(rows, []any{cluster, run.ID, addr, string(b)})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"upshift_steps"}, []string{"cluster_id", "run_id", "address", "step"}, pgx.CopyFromRows(rows)); err != nil {
		return err
	}
	rows = rows[:0]
	for i := range run.Samples {
		b, err := json.Marshal(&run.Samples[i])
		if err != nil {
			return err
		}
		rows = append(rows, []any{cluster, run.ID, int64(i + 1), string(b)})
	}
	_, err = tx.CopyFrom(ctx, pgx.Identifier{"upshift_samples"}, []string{"cluster_id", "run_id", "n", "sample"}, pgx.CopyFromRows(rows))
	return err
}

// MigrateToLocal moves the clusters kept in pg (those whose ID starts
// with prefix, every one when it is "") into the state folder, where each
// must hold no run yet, then deletes them from pg.
func MigrateToLocal(ctx context.Context, pg *PGStore, store *Store, prefix string) ([]Moved, error) {
	all, err := pg.Clusters(ctx)
	if err != nil {
		return nil, err
	}
	var out []Moved
	for _, cs := range all {
		if !strings.HasPrefix(cs.Cluster.ID, prefix) {
			continue
		}
		m, err := migrateOneToLocal(ctx, pg, store, cs.Cluster)
		if err != nil {
			return out, fmt.Errorf("cluster %s: %w", cs.Cluster.Label(), err)
		}
		out = append(out, m)
	}
	return out, nil
}

func migrateOneToLocal(ctx context.Context, pg *PGStore, store *Store, c *Cluster) (Moved, error) {
	m := Moved{Cluster: c}
	plock, err := pg.Acquire(ctx, c, CurrentOwner("upshift state migrate --to local"))
	if err != nil {
		return m, err
	}
	defer plock.Release()
	dir, err := store.Register(c)
	if err != nil {
		return m, err
	}
	flock, err := Acquire(dir, CurrentOwner("upshift state migrate --to local"))
	if err != nil {
		return m, err
	}
	defer flock.Release()
	j := &Journal{dir: dir, now: time.Now, open: true}
	if run, err := j.Load(); err != nil {
		return m, err
	} else if hist, _ := j.History(); run != nil || len(hist) > 0 {
		return m, fmt.Errorf("the state folder already holds runs of this cluster in %s; nothing was moved", dir)
	}
	if pg.cfg.Key == nil {
		var sealed bool
		if err := pg.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM upshift_steps s JOIN upshift_runs r USING (cluster_id, run_id) WHERE r.cluster_id = $1 AND r.current AND strpos(s.step, '"result_wire":') > 0)`, c.ID).Scan(&sealed); err != nil {
			return m, pg.scrub(err)
		}
		if sealed {
			return m, errors.New("journal: no state key: the current run's results are sealed under the key of UPSHIFT_STATE_KEY_FILE")
		}
	}
	cur, err := pg.loadRun(ctx, pg.pool, c.ID, "", pg.cfg.Key != nil)
	if err != nil {
		return m, pg.scrub(err)
	}
	past, err := pg.past(ctx, c.ID)
	if err != nil {
		return m, pg.scrub(err)
	}
	key, err := j.loadKey(true)
	if err != nil {
		return m, err
	}
	if len(past) > 0 {
		if err := os.MkdirAll(j.historyDir(), 0o700); err != nil {
			return m, fmt.Errorf("journal: %w", err)
		}
	}
	for _, r := range past {
		steps, err := encodeSteps(nil, r.Steps)
		if err != nil {
			return m, err
		}
		name := r.StartedAt.UTC().Format("20060102T150405Z") + "-" + safeName(r.ID) + ".json"
		if err := writeSnapshot(filepath.Join(j.historyDir(), name), r, steps, 0, true); err != nil {
			return m, err
		}
	}
	if cur != nil {
		steps, err := encodeSteps(key, cur.Steps)
		if err != nil {
			return m, err
		}
		if err := writeSnapshot(j.snapshotPath(), cur, steps, 0, true); err != nil {
			return m, err
		}
		m.Current = cur.ID
	}
	if err := syncDir(dir); err != nil {
		return m, err
	}
	m.Past = len(past)
	// The files are durable: PostgreSQL's copy goes, so that no run
	// resumes it there.
	err = pgx.BeginFunc(ctx, pg.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM upshift_runs WHERE cluster_id = $1`, c.ID); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `DELETE FROM upshift_clusters WHERE id = $1`, c.ID)
		return err
	})
	if err != nil {
		return m, pg.scrub(fmt.Errorf("the state is in %s now, but deleting it from PostgreSQL failed (delete cluster %s's runs there by hand so that no run resumes them): %w", dir, c.Short(), err))
	}
	return m, nil
}
