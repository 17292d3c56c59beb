package platform

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

// Response headers, part of the HTTP contract.
const (
	HeaderNode     = "X-Platform-Node"
	HeaderVersion  = "X-Platform-Version"
	HeaderReadOnly = "X-Upshift-Read-Only"
	// SessionCookie identifies a client's session: set on a response to a
	// request without it, so that a load balancer can keep the session on
	// one node by hashing on it (nginx: `hash $cookie_platform_session
	// consistent`).
	SessionCookie = "platform_session"
)

// Limits of the HTTP API.
const (
	maxSlowMS      = 5000
	defaultSlowMS  = 300
	defaultLimit   = 100
	maxLimit       = 1000
	maxIDLen       = 255
	maxRequestBody = 1 << 20
)

// Item is one row of items as the API shows it. Checksum is set by
// version-2 nodes only.
type Item struct {
	ID       string `json:"id"`
	Value    string `json:"value"`
	Checksum string `json:"checksum,omitempty"`
}

// Health is the body of GET /healthz.
type Health struct {
	Status     string `json:"status"` // ok | starting | stopping | unavailable
	Name       string `json:"name"`
	Version    string `json:"version"`
	ReadOnly   bool   `json:"read_only"`
	Processing bool   `json:"processing"`
	// Pid and Instance say which process answers: its process id, and an
	// id drawn at random when the Server was made (unique per start), so
	// whoever started the node can tell it from another process that
	// holds the port. /version stays {"version":..}: peers and scripts
	// read it as strings.
	Pid      int    `json:"pid"`
	Instance string `json:"instance"`
	// Reason says why a ready node is "unavailable" ("database
	// unreachable"); the details are in the node's log only.
	Reason string `json:"reason,omitempty"`
}

// ErrorBody is the JSON body of every error response: a short, stable
// Error code ("read-only", "not-found", "exists", "bad-request",
// "schema-mismatch", "starting", "database") and a human Detail.
type ErrorBody struct {
	Error  string `json:"error"`
	Detail string `json:"detail,omitempty"`
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealthz)
	mux.HandleFunc("GET /version", s.handleVersion)
	mux.HandleFunc("GET /manifest", s.handleManifest)
	mux.HandleFunc("GET /items", s.handleListItems)
	mux.HandleFunc("GET /items/{id}", s.handleGetItem)
	mux.HandleFunc("POST /items", s.handlePostItem)
	mux.HandleFunc("GET /slow", s.handleSlow)
	// The admin API has a listener of its own (adminRoutes).
	mux.HandleFunc("/admin/", handleNoAdmin)
	mux.HandleFunc("/admin", handleNoAdmin)
	return s.middleware(mux)
}

// middleware stamps every response with the node's name and version, and
// keeps requests that need the database away until the start-up checks pass.
func (s *Server) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderNode, s.cfg.Name)
		w.Header().Set(HeaderVersion, s.cfg.VersionString())
		if _, err := r.Cookie(SessionCookie); err != nil {
			http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: newID(), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
		}
		if s.state.Load() == stateStarting && r.URL.Path != "/healthz" && r.URL.Path != "/version" {
			writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: "starting", Detail: "node is starting"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	status, code, reason := "ok", http.StatusOK, ""
	switch s.state.Load() {
	case stateStarting:
		status, code = "starting", http.StatusServiceUnavailable
	case stateStopping:
		status, code = "stopping", http.StatusServiceUnavailable
	default:
		if err := s.databaseUp(r.Context()); err != nil {
			status, code, reason = "unavailable", http.StatusServiceUnavailable, "database unreachable"
		}
	}
	writeJSON(w, code, Health{
		Reason:     reason,
		Status:     status,
		Name:       s.cfg.Name,
		Version:    s.cfg.VersionString(),
		ReadOnly:   s.readOnly.Load(),
		Processing: s.cfg.Processing,
		Pid:        os.Getpid(),
		Instance:   s.instance,
	})
}

func (s *Server) handleVersion(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": s.cfg.VersionString()})
}

func (s *Server) handleGetItem(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), requestDBTimeout)
	defer cancel()
	id := r.PathValue("id")
	var it Item
	var err error
	if s.cfg.Version >= Version2 {
		var sum sql.NullString
		err = s.db.QueryRowContext(ctx, s.d.q("SELECT id, value, checksum FROM items WHERE id = ?"), id).Scan(&it.ID, &it.Value, &sum)
		it.Checksum = sum.String
	} else {
		err = s.db.QueryRowContext(ctx, s.d.q("SELECT id, value FROM items WHERE id = ?"), id).Scan(&it.ID, &it.Value)
	}
	switch {
	case errors.Is(err, sql.ErrNoRows):
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: "not-found", Detail: "no item " + strconv.Quote(id)})
	case err != nil:
		s.dbError(w, "get item", err)
	default:
		writeJSON(w, http.StatusOK, it)
	}
}

func (s *Server) handleListItems(w http.ResponseWriter, r *http.Request) {
	limit := defaultLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "limit must be a positive integer"})
			return
		}
		limit = min(n, maxLimit)
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestDBTimeout)
	defer cancel()
	cols := "id, value"
	if s.cfg.Version >= Version2 {
		cols = "id, value, checksum"
	}
	rows, err := s.db.QueryContext(ctx, s.d.q("SELECT "+cols+" FROM items ORDER BY id LIMIT ?"), limit)
	if err != nil {
		s.dbError(w, "list items", err)
		return
	}
	defer func() { _ = rows.Close() }()
	items := []Item{}
	for rows.Next() {
		var it Item
		if s.cfg.Version >= Version2 {
			var sum sql.NullString
			err = rows.Scan(&it.ID, &it.Value, &sum)
			it.Checksum = sum.String
		} else {
			err = rows.Scan(&it.ID, &it.Value)
		}
		if err != nil {
			s.dbError(w, "list items", err)
			return
		}
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		s.dbError(w, "list items", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) handleSlow(w http.ResponseWriter, r *http.Request) {
	ms := defaultSlowMS
	if v := r.URL.Query().Get("ms"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "ms must be a non-negative integer"})
			return
		}
		ms = min(n, maxSlowMS)
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // client gone
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestDBTimeout)
	defer cancel()
	var n int64
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM items").Scan(&n); err != nil {
		s.dbError(w, "slow read", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"slept_ms": ms, "items": n})
}

func (s *Server) handlePostItem(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID    string  `json:"id"`
		Value *string `json:"value"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "body must be a JSON object {\"id\":..,\"value\":..}"})
		return
	}
	if body.Value == nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "value is required"})
		return
	}
	if len(body.ID) > maxIDLen {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "id is longer than 255 bytes"})
		return
	}
	if body.ID == "" {
		body.ID = newID()
	}

	s.writeMu.RLock()
	defer s.writeMu.RUnlock()
	if s.readOnly.Load() {
		w.Header().Set(HeaderReadOnly, "1")
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: "read-only", Detail: "node is in read-only mode for an upgrade"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestDBTimeout)
	defer cancel()
	err := s.insertItem(ctx, body.ID, *body.Value)
	switch {
	case err == nil:
		writeJSON(w, http.StatusCreated, map[string]string{"id": body.ID})
	case isDuplicateKey(err):
		writeJSON(w, http.StatusConflict, ErrorBody{Error: "exists", Detail: "item " + strconv.Quote(body.ID) + " already exists"})
	case errors.Is(err, ErrVersionMismatch):
		s.log.Error("refusing write", "err", err)
		writeJSON(w, http.StatusServiceUnavailable, ErrorBody{Error: "schema-mismatch", Detail: err.Error()})
	default:
		s.dbError(w, "insert item", err)
	}
}

// insertItem commits one item. It checks the schema in the same transaction:
// a node must not write into a database migrated under it.
func (s *Server) insertItem(ctx context.Context, id, value string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	v, err := schemaVersion(ctx, tx, s.d)
	if err != nil {
		return err
	}
	if err := schemaMismatch(v, s.cfg.Version); err != nil {
		return err
	}
	now := time.Now().UnixMilli()
	if s.cfg.Version >= Version2 {
		_, err = tx.ExecContext(ctx, s.d.q("INSERT INTO items (id, value, created_at, checksum) VALUES (?, ?, ?, ?)"), id, value, now, checksum(value))
	} else {
		_, err = tx.ExecContext(ctx, s.d.q("INSERT INTO items (id, value, created_at) VALUES (?, ?, ?)"), id, value, now)
	}
	if err != nil {
		return err
	}
	return tx.Commit()
}

func (s *Server) handleGetReadOnly(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]bool{"read_only": s.readOnly.Load()})
}

func (s *Server) handleSetReadOnly(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody)).Decode(&body); err != nil || body.Enabled == nil {
		writeJSON(w, http.StatusBadRequest, ErrorBody{Error: "bad-request", Detail: "body must be {\"enabled\": true|false}"})
		return
	}
	s.SetReadOnly(*body.Enabled)
	writeJSON(w, http.StatusOK, map[string]bool{"read_only": s.readOnly.Load()})
}

// dbError logs a database error on the node's log and answers 500 with a
// generic detail: the error itself may name the database's user, name and
// address, which are no client's business.
func (s *Server) dbError(w http.ResponseWriter, what string, err error) {
	s.log.Error(what, "err", err)
	writeJSON(w, http.StatusInternalServerError, ErrorBody{Error: "database", Detail: what + " failed: database error"})
}

// dbHealth is the last outcome of /healthz's database ping.
type dbHealth struct {
	mu  sync.Mutex
	at  time.Time // zero: never asked
	err error
}

// databaseUp pings the database, at most once per HealthDBCache and for at
// most HealthDBTimeout; concurrent checks share one ping. A change of
// outcome is logged with the error.
func (s *Server) databaseUp(ctx context.Context) error {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.at.IsZero() && time.Since(h.at) < s.HealthDBCache {
		return h.err
	}
	// Not the request's own cancellation: a client that hangs up must not
	// leave "down" in the cache.
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.HealthDBTimeout)
	err := s.ping(pctx)
	cancel()
	switch {
	case err != nil && (h.at.IsZero() || h.err == nil):
		s.log.Error("health: database unreachable", "err", err)
	case err == nil && h.err != nil:
		s.log.Info("health: database reachable again")
	}
	h.at, h.err = time.Now(), err
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
