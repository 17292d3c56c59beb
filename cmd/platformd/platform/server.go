package platform

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Node lifecycle states, as /healthz reports them.
const (
	stateStarting int32 = iota
	stateReady
	stateStopping
)

// Defaults of a Server; tests shorten some of them.
const (
	DefaultProcessInterval = 500 * time.Millisecond
	DefaultShutdownTimeout = 10 * time.Second
	DefaultPeerTimeout     = 2 * time.Second
	// DefaultHealthDBTimeout bounds /healthz's ping of the database, and
	// DefaultHealthDBCache is how long its answer is reused, so that a
	// load balancer's checks do not hammer the database.
	DefaultHealthDBTimeout = time.Second
	DefaultHealthDBCache   = time.Second
	requestDBTimeout       = 10 * time.Second
)

// Server is one platformd node: an HTTP server over the node's database.
// A Server runs once: create a new one to start the node again.
type Server struct {
	cfg *Config
	log *slog.Logger
	d   dialect

	// ProcessInterval is the period of the processing loop.
	ProcessInterval time.Duration
	// ShutdownTimeout bounds the graceful shutdown; requests still running
	// then are cut.
	ShutdownTimeout time.Duration
	// PeerTimeout bounds the /version question to each peer at start.
	PeerTimeout time.Duration
	// HealthDBTimeout bounds /healthz's database ping; HealthDBCache is how
	// long its outcome is reused.
	HealthDBTimeout, HealthDBCache time.Duration

	db       *sql.DB
	state    atomic.Int32
	readOnly atomic.Bool
	// writeMu is held shared by every database write and exclusively while
	// read-only mode is switched on, so that once SetReadOnly(true) returns
	// no write is in flight and none will commit.
	writeMu sync.RWMutex

	// adminTokenSum is the SHA-256 of the admin token, nil when the admin
	// API takes none (a unix socket without admin_token).
	adminTokenSum []byte
	adminAddr     atomic.Value // net.Addr
	// health caches /healthz's database ping; ping is the ping itself
	// (tests replace it).
	health dbHealth
	ping   func(context.Context) error

	instance string // random, per Server: /healthz and /version report it
	ready    chan struct{}
	addr     atomic.Value // net.Addr
	started  atomic.Bool
}

// NewServer makes a node from a validated config. logger may be nil.
// Nothing is opened until Run or Serve.
func NewServer(cfg *Config, logger *slog.Logger) (*Server, error) {
	if cfg == nil {
		return nil, newKindError(ErrConfig, "nil config")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	tok, err := cfg.LoadAdminToken()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:             cfg,
		log:             logger.With("node", cfg.Name, "version", cfg.Version),
		d:               dialect(cfg.DBDriver),
		ProcessInterval: DefaultProcessInterval,
		ShutdownTimeout: DefaultShutdownTimeout,
		PeerTimeout:     DefaultPeerTimeout,
		HealthDBTimeout: DefaultHealthDBTimeout,
		HealthDBCache:   DefaultHealthDBCache,
		ready:           make(chan struct{}),
		instance:        newID(),
	}
	if tok != "" {
		sum := sha256.Sum256([]byte(tok))
		s.adminTokenSum = sum[:]
	}
	s.ping = func(ctx context.Context) error { return s.db.PingContext(ctx) }
	return s, nil
}

// Config returns the node's config.
func (s *Server) Config() *Config { return s.cfg }

// Instance is the id /healthz and /version report, drawn when the Server
// was made.
func (s *Server) Instance() string { return s.instance }

// Ready is closed once the node has passed its start-up checks and serves.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the address the node listens on, nil before Serve.
func (s *Server) Addr() net.Addr {
	a, _ := s.addr.Load().(net.Addr)
	return a
}

// AdminAddr is the address the admin API listens on (a unix socket's path
// for a unix address), nil until the node is ready.
func (s *Server) AdminAddr() net.Addr {
	a, _ := s.adminAddr.Load().(net.Addr)
	return a
}

// URL is the node's base URL ("http://127.0.0.1:18081"), "" before Serve.
func (s *Server) URL() string {
	if a := s.Addr(); a != nil {
		return "http://" + a.String()
	}
	return ""
}

// ReadOnly reports whether the node refuses writes.
func (s *Server) ReadOnly() bool { return s.readOnly.Load() }

// SetReadOnly switches full read-only mode. Switching it on waits for the
// writes in flight to finish, so none commits after it returns.
func (s *Server) SetReadOnly(enabled bool) {
	s.writeMu.Lock()
	s.readOnly.Store(enabled)
	s.writeMu.Unlock()
	s.log.Info("read-only mode", "enabled", enabled)
}

// Run listens on the config's address and serves until ctx is done; see Serve.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.Listen, err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves on ln until ctx is done, then shuts down gracefully: /healthz
// turns 503, the listener closes, requests in flight finish (up to
// ShutdownTimeout), the processing loop stops and the database is closed.
//
// The listener is served from the start so that /healthz answers 503 and
// /version answers while the start-up checks run (database schema, data
// folder, peers); if a check fails, Serve returns its error (see ExitCode).
// It returns nil after a shutdown asked for through ctx. Serve closes ln.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.started.CompareAndSwap(false, true) {
		_ = ln.Close()
		return errors.New("platform: Server already started")
	}
	s.addr.Store(ln.Addr())
	hs := &http.Server{
		Handler:           s.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	s.log.Info("listening", "addr", ln.Addr().String())

	if err := s.start(ctx); err != nil {
		s.state.Store(stateStopping)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
		if s.db != nil {
			_ = s.db.Close()
		}
		return err
	}

	// The admin API opens once the checks have passed (its default socket
	// is in the data folder, which they create).
	adminLn, err := s.listenAdmin()
	if err != nil {
		s.state.Store(stateStopping)
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = hs.Shutdown(sctx)
		cancel()
		_ = s.db.Close()
		return err
	}
	s.adminAddr.Store(adminLn.Addr())
	as := &http.Server{
		Handler:           s.adminRoutes(),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	adminErr := make(chan error, 1)
	go func() { adminErr <- as.Serve(adminLn) }()
	s.log.Info("admin API listening", "addr", adminLn.Addr().String(), "token", s.adminTokenSum != nil)

	procCtx, stopProc := context.WithCancel(context.Background())
	procDone := make(chan struct{})
	if s.cfg.Processing {
		go func() { defer close(procDone); s.processLoop(procCtx) }()
	} else {
		close(procDone)
	}
	s.state.Store(stateReady)
	close(s.ready)
	s.log.Info("ready", "processing", s.cfg.Processing, "driver", s.cfg.DBDriver)

	var runErr error
	select {
	case <-ctx.Done():
	case err := <-serveErr:
		runErr = fmt.Errorf("http server: %w", err)
	case err := <-adminErr:
		runErr = fmt.Errorf("admin http server: %w", err)
	}

	s.state.Store(stateStopping)
	s.log.Info("shutting down", "timeout", s.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), s.ShutdownTimeout)
	if err := hs.Shutdown(sctx); err != nil {
		s.log.Warn("graceful shutdown incomplete, closing connections", "err", err)
		_ = hs.Close()
	}
	cancel()
	actx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	if err := as.Shutdown(actx); err != nil {
		_ = as.Close()
	}
	cancel()
	s.removeAdminSocket()
	stopProc()
	<-procDone
	if err := s.db.Close(); err != nil {
		s.log.Warn("close database", "err", err)
	}
	s.log.Info("stopped")
	return runErr
}

// start runs the start-up checks in order: database and schema, data
// folder, then (version 2) the peers and the rolling-upgrade marker.
func (s *Server) start(ctx context.Context) error {
	db, err := OpenDB(ctx, s.cfg)
	if err != nil {
		return err
	}
	s.db = db
	if err := s.checkSchema(ctx); err != nil {
		return err
	}
	if err := prepareDataDir(s.cfg); err != nil {
		return err
	}
	if s.cfg.Version >= Version2 {
		if err := s.checkPeers(ctx); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// checkSchema makes sure the database is at the node's version, creating
// schema 1 in an empty database for a version-1 node.
func (s *Server) checkSchema(ctx context.Context) error {
	v, err := schemaVersion(ctx, s.db, s.d)
	if err != nil {
		return err
	}
	if v == 0 && s.cfg.Version == Version1 {
		s.log.Info("empty database: creating schema 1")
		if err := initSchema1(ctx, s.db, s.d); err != nil {
			return err
		}
		v = Version1
	}
	return schemaMismatch(v, s.cfg.Version)
}

// schemaMismatch is nil when a node of version node may use a database at
// schema version db.
func schemaMismatch(db, node int) error {
	switch {
	case db == node:
		return nil
	case db == 0:
		return newKindError(ErrVersionMismatch, "database has no platformd schema, this node runs version %d: run platformd migrate first on a copy of a version-1 database", node)
	case db < node:
		return newKindError(ErrVersionMismatch, "database is at schema %d, this node runs version %d: run platformd migrate first", db, node)
	default:
		return newKindError(ErrVersionMismatch, "database is at schema %d, this node runs version %d", db, node)
	}
}

// markerExists reports whether the rolling-upgrade marker is present.
func (s *Server) markerExists() bool {
	_, err := os.Stat(s.cfg.MarkerPath())
	return err == nil
}
