package journal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/internal/servers/postgresd"
)

// The tests' PostgreSQL: one throwaway server (postgresd) for this test
// binary, started on first use and stopped by TestMain, each test in a
// database of its own. Never the machine's own server.
var (
	pgOnce   sync.Once
	pgServer *postgresd.Server
	pgErr    error
)

const (
	helperDSNEnv = "UPSHIFT_JOURNAL_TEST_DSN"
	helperKeyEnv = "UPSHIFT_JOURNAL_TEST_KEY"
)

func stopPG() error {
	if pgServer == nil {
		return nil
	}
	return pgServer.Stop()
}

func pgAdminDSN(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL server")
	}
	pgOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		pgServer, pgErr = postgresd.Start(ctx, postgresd.Options{})
	})
	if pgErr != nil {
		t.Fatalf("no throwaway PostgreSQL (install postgresql: run .ci/setup): %v", pgErr)
	}
	return pgServer.DSN("postgres")
}

// withDB is dsn with its database replaced.
func withDB(dsn, db string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

// newPGDB creates a database for the test, dropped when it ends, and
// returns its DSN.
func newPGDB(t testing.TB, admin string) string {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, admin)
	require.NoError(t, err)
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	name := "upshift_state_" + hex.EncodeToString(b)
	_, err = c.Exec(ctx, "CREATE DATABASE "+name)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = c.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		_ = c.Close(context.Background())
	})
	return withDB(admin, name)
}

func testKey(t testing.TB) []byte {
	k := make([]byte, keyLen)
	_, err := rand.Read(k)
	require.NoError(t, err)
	return k
}

func openTestPG(t testing.TB, dsn string, key []byte) *PGStore {
	t.Helper()
	s, err := OpenPG(context.Background(), PGConfig{DSN: dsn, Key: key})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func pgCluster(id string) *Cluster {
	return &Cluster{ID: id, Name: "prod-" + id[:4], Resources: []ClusterResource{{Address: "database.main", Kind: "database", Plugin: "postgres", Fields: map[string]string{"config.dsn": "postgres://app@db:5432/app"}}}}
}

// secretStep is a done step whose result holds a secret, as a copy's dsn
// does: sealed at rest, opened for a writer's resume.
func secretStep(i int) Step {
	t0 := time.Date(2026, 12, 5, 9, 0, i, 0, time.UTC)
	return Step{
		Address: fmt.Sprintf("step.copy[%q]", fmt.Sprint(i)), Status: Done, Action: "database.main.copy", Attempts: 1,
		Args:       json.RawMessage(`{"to":"app_b"}`),
		Result:     json.RawMessage(`{"dsn":"(sensitive)"}`),
		ResultType: json.RawMessage(`["object",{"dsn":"string"}]`),
		ResultWire: json.RawMessage(`{"dsn":"postgres://app:hunter2-` + fmt.Sprint(i) + `@db/app_b"}`),
		StartedAt:  t0, EndedAt: t0.Add(time.Second),
	}
}

func TestPGJournalRoundTrip(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	key := testKey(t)
	s := openTestPG(t, dsn, key)
	ctx := context.Background()
	c := pgCluster("aa11bb22cc33dd44")
	require.NoError(t, s.Register(ctx, c))

	j := s.Journal(c)
	j.SetAudit(&Audit{User: "ops", Host: "laptop", Version: "1.2.3", Command: "upshift run p -var db_password=(hidden)"})
	run := &Run{ID: "r1", Playbook: "p", Cluster: c.ID, Digest: "sha256:abc", Steps: map[string]*Step{
		"step.a": {Address: "step.a", Status: Pending},
	}}
	require.NoError(t, j.Begin(run))
	require.NoError(t, j.Record(Step{Address: "step.a", Status: Running, Attempts: 1}))
	want := secretStep(1)
	require.NoError(t, j.Update(want))
	require.NoError(t, j.RecordSample(Sample{Rollout: "upgrade", At: time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC), Backend: &Counters{Requests: 10}}))
	require.NoError(t, j.RecordSample(Sample{Rollout: "upgrade", At: time.Date(2026, 12, 5, 9, 0, 1, 0, time.UTC), Error: "no answer"}))
	require.NoError(t, j.FinishWith(Failed, &Ending{PointOfNoReturn: "step.start[\"node-1\"]", Standing: []string{"node-1: upgraded"}}))

	// A new writer (a resume from another machine) reads it all back,
	// the secret opened.
	got, err := s.Journal(c).Load()
	require.NoError(t, err)
	require.Equal(t, "r1", got.ID)
	require.Equal(t, Failed, got.Status)
	require.Equal(t, &Ending{PointOfNoReturn: "step.start[\"node-1\"]", Standing: []string{"node-1: upgraded"}}, got.Ending)
	require.Equal(t, "ops", got.Audit.User)
	require.Equal(t, "1.2.3", got.Audit.Version)
	require.Len(t, got.Samples, 2)
	require.Equal(t, int64(10), got.Samples[0].Backend.Requests)
	require.Equal(t, "no answer", got.Samples[1].Error)
	require.Equal(t, &want, got.Steps[want.Address])
	require.Equal(t, Running, got.Steps["step.a"].Status)
	require.True(t, j.SameDigest(got, "sha256:abc"))
	require.False(t, j.SameDigest(got, "sha256:abd"))

	// At rest: no secret, no digest in clear.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var dump string
	require.NoError(t, conn.QueryRow(ctx, `SELECT string_agg(step, '') FROM upshift_steps`).Scan(&dump))
	require.NotContains(t, dump, "hunter2")
	require.Contains(t, dump, sealedPrefix)
	var header string
	require.NoError(t, conn.QueryRow(ctx, `SELECT header FROM upshift_runs`).Scan(&header))
	require.NotContains(t, header, "sha256:abc")

	// A reader (status) gets no result wire at all.
	cur, err := s.Current(ctx, c)
	require.NoError(t, err)
	require.Nil(t, cur.Steps[want.Address].ResultWire)
}

func TestPGBeginKeepsHistoryAndRefusesUnfinished(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	s := openTestPG(t, dsn, testKey(t))
	ctx := context.Background()
	c := pgCluster("ee11bb22cc33dd44")
	require.NoError(t, s.Register(ctx, c))
	j := s.Journal(c)
	require.NoError(t, j.Begin(&Run{ID: "r1", Steps: map[string]*Step{}}))
	require.NoError(t, j.Update(secretStep(1)))

	var unfinished *UnfinishedError
	require.ErrorAs(t, s.Journal(c).Begin(&Run{ID: "r2"}), &unfinished)
	require.Equal(t, "r1", unfinished.Run.ID)

	require.NoError(t, j.Finish(Done))
	require.NoError(t, s.Journal(c).Begin(&Run{ID: "r2", Steps: map[string]*Step{}}))
	all, err := s.Clusters(ctx)
	require.NoError(t, err)
	require.Len(t, all, 1)
	require.Equal(t, "r2", all[0].Current.ID)
	require.Len(t, all[0].Past, 1)
	require.Equal(t, "r1", all[0].Past[0].ID)
	require.Equal(t, Done, all[0].Past[0].Status)

	// History keeps no sealed result, even for a writer's eyes.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM upshift_steps WHERE run_id = 'r1' AND strpos(step, 'result_wire') > 0`).Scan(&n))
	require.Zero(t, n)
}

func TestPGSchemaCreatedOnceAndVersioned(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	ctx := context.Background()
	// Several first users at once: one creates, the others find it made.
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := OpenPG(ctx, PGConfig{DSN: dsn})
			if err == nil {
				_ = s.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var versions []int32
	rows, err := conn.Query(ctx, `SELECT version FROM upshift_schema_version ORDER BY version`)
	require.NoError(t, err)
	versions, err = pgx.CollectRows(rows, pgx.RowTo[int32])
	require.NoError(t, err)
	require.Equal(t, []int32{pgSchemaVersion}, versions)

	// A database written by a newer upshift is refused, not misread.
	_, err = conn.Exec(ctx, `INSERT INTO upshift_schema_version VALUES ($1)`, pgSchemaVersion+1)
	require.NoError(t, err)
	_, err = OpenPG(ctx, PGConfig{DSN: dsn})
	require.ErrorContains(t, err, "newer than this upshift understands")
}

func TestPGWrongKeyAndPasswordNeverShown(t *testing.T) {
	admin := pgAdminDSN(t)
	dsn := newPGDB(t, admin)
	ctx := context.Background()
	openTestPG(t, dsn, testKey(t))
	_, err := OpenPG(ctx, PGConfig{DSN: dsn, Key: testKey(t)})
	require.ErrorContains(t, err, "not the one the state in PostgreSQL")

	// A wrong password: the error says so without the password.
	u, _ := url.Parse(dsn)
	_, err = OpenPG(ctx, PGConfig{DSN: dsn, Password: "wr0ng-s3cret-pw"})
	require.Error(t, err)
	require.NotContains(t, err.Error(), "wr0ng-s3cret-pw")
	pw, _ := u.User.Password()
	require.NotEmpty(t, pw)
	_, err = OpenPG(ctx, PGConfig{DSN: strings.Replace(dsn, "/upshift_state_", "/no_such_db_", 1)})
	require.Error(t, err)
	require.NotContains(t, err.Error(), pw)
}

func TestPGLockRefusesSecondHolderAndFreesOnCrash(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	s := openTestPG(t, dsn, nil)
	ctx := context.Background()
	c := pgCluster("ff11bb22cc33dd44")
	require.NoError(t, s.Register(ctx, c))

	// The holder is another process, as another runner would be.
	cmd, out := startHelper(t, "pglock", map[string]string{helperDSNEnv: dsn, helperDirEnv: c.ID})
	waitLine(t, out, "locked")

	_, err := s.Acquire(ctx, c, Owner{})
	var held *HeldError
	require.ErrorAs(t, err, &held)
	require.NotNil(t, held.Owner, "%v", err)
	require.Equal(t, cmd.Process.Pid, held.Owner.PID)
	host, _ := os.Hostname()
	require.Equal(t, host, held.Owner.Host)
	require.False(t, held.Owner.Since.IsZero())
	require.Contains(t, err.Error(), "upshift run playbooks/rolling-upgrade")
	require.Contains(t, err.Error(), c.Label())

	// SIGKILL: its session ends, the lock is free, the owner row is stale.
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()
	var l *PGLock
	require.Eventually(t, func() bool {
		l, err = s.Acquire(ctx, c, Owner{})
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "%v", err)
	prev, stale := l.TakenOver()
	require.True(t, stale)
	require.Equal(t, cmd.Process.Pid, prev.PID)
	require.NoError(t, l.Release())
	// Released cleanly: the next holder takes over nothing.
	l, err = s.Acquire(ctx, c, Owner{})
	require.NoError(t, err)
	_, stale = l.TakenOver()
	require.False(t, stale)
	require.NoError(t, l.Release())
}

func TestPGFencedWritesStopWhenLockLost(t *testing.T) {
	dsn := newPGDB(t, pgAdminDSN(t))
	s := openTestPG(t, dsn, testKey(t))
	ctx := context.Background()
	c := pgCluster("1111bb22cc33dd44")
	require.NoError(t, s.Register(ctx, c))
	l, err := s.Acquire(ctx, c, Owner{})
	require.NoError(t, err)
	defer l.Release()
	j := s.Journal(c)
	j.WithLock(l, nil)
	require.NoError(t, j.Begin(&Run{ID: "r1", Steps: map[string]*Step{}}))
	require.NoError(t, j.Update(Step{Address: "step.a", Status: Running}))
	// Another run took the cluster (as after a server restart that ended
	// this one's session): its token replaces ours.
	conn, err := pgx.Connect(ctx, dsn)
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, `UPDATE upshift_locks SET token = 'someone-else'`)
	require.NoError(t, err)
	err = j.Update(Step{Address: "step.a", Status: Done})
	require.ErrorIs(t, err, errLockLost)
	got, err := s.Journal(c).Load()
	require.NoError(t, err)
	require.Equal(t, Running, got.Steps["step.a"].Status, "a write after the lock was lost reached the database")
}
