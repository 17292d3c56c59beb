package platform

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// checkPeers refuses the start of a version-2 node while a peer answers
// version 1, unless the rolling-upgrade marker exists. A peer that does not
// answer, or answers something unreadable, is not a conflict: a stopped node
// runs nothing.
func (s *Server) checkPeers(ctx context.Context) error {
	if len(s.cfg.Peers) == 0 {
		return nil
	}
	client := &http.Client{Timeout: s.PeerTimeout}
	versions := make([]string, len(s.cfg.Peers))
	var wg sync.WaitGroup
	for i, peer := range s.cfg.Peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := peerVersion(ctx, client, peer)
			if err != nil {
				s.log.Info("peer did not tell its version; not a conflict", "peer", peer, "err", err)
				return
			}
			versions[i] = v
		}()
	}
	wg.Wait()

	var old []string
	for i, v := range versions {
		if v == "1" {
			old = append(old, s.cfg.Peers[i])
		}
	}
	if len(old) == 0 {
		return nil
	}
	if s.markerExists() {
		s.log.Info("peers still run version 1; rolling-upgrade marker present, running alongside them",
			"peers", strings.Join(old, ","), "marker", s.cfg.MarkerPath())
		return nil
	}
	return &ConflictError{Peers: old, Marker: s.cfg.MarkerPath()}
}

func peerVersion(ctx context.Context, client *http.Client, peer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, peer+"/version", nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET /version: %s", resp.Status)
	}
	var body struct {
		Version json.RawMessage `json:"version"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&body); err != nil {
		return "", fmt.Errorf("GET /version: %w", err)
	}
	// Accept "1" and 1 alike.
	return strings.Trim(string(body.Version), `" `), nil
}
