package nodekit

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"
)

// The node's admin API (read-only mode) is not on its public address: a
// load balancer forwards that one. platformd serves it on a listener of
// its own (admin_listen): by default a unix socket in the data folder,
// <data_dir>/admin.sock, which only the node's user may open; or a
// host:port, which takes a bearer token. A node says where it is with
// read_only_url (a TCP admin listener) or admin_socket (a unix socket);
// without either, the default socket is used. The token is never a node
// attribute (the playbook's variables, plans and journals would carry
// it): admin_token_file names a file on the plugin's host that holds it,
// read at each request and never logged or quoted.

// AdminSocketFile is the default admin socket's name in the data folder.
const AdminSocketFile = "admin.sock"

// adminTimeout bounds one admin request, as httpClient does.
const adminTimeout = 5 * time.Second

// adminDefaults fills the admin endpoint of a node read from the
// playbook: read_only_url when given, else a unix socket (admin_socket,
// by default in the data folder) with readOnlyPath on it.
func (n *Node) adminDefaults(readOnlyPath string) {
	if n.ReadOnlyURL != "" {
		return
	}
	if n.AdminSocket == "" && n.DataDir != "" {
		n.AdminSocket = path.Join(n.DataDir, AdminSocketFile)
	}
	if n.Address != "" {
		// Kept for messages and for platforms without a socket; the
		// request goes to the socket when there is one.
		n.ReadOnlyURL = "http://" + n.Address + readOnlyPath
	} else {
		n.ReadOnlyURL = "http://localhost" + readOnlyPath
	}
}

// adminEndpoint names where admin requests go, for messages.
func (n *Node) adminEndpoint() string {
	if n.AdminSocket == "" {
		return n.ReadOnlyURL
	}
	p := "/"
	if u, err := url.Parse(n.ReadOnlyURL); err == nil && u.Path != "" {
		p = u.Path
	}
	return "unix:" + n.AdminSocket + ":" + p
}

// adminToken reads the node's admin token from AdminTokenFile; "" when the
// node has none. Errors name the file, never its content.
func (n *Node) adminToken() (string, error) {
	if n.AdminTokenFile == "" {
		return "", nil
	}
	b, err := os.ReadFile(n.AdminTokenFile)
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("admin token file %s is empty", n.AdminTokenFile)
	}
	return tok, nil
}

// adminRequest sends one request to the node's admin API: over its unix
// socket when it has one, with its token when it has one, and as JSON.
func (n *Node) adminRequest(ctx context.Context, method string, body io.Reader) (*http.Response, error) {
	tok, err := n.adminToken()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, n.ReadOnlyURL, body)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	c := httpClient
	if n.AdminSocket != "" {
		sock := n.AdminSocket
		c = &http.Client{Timeout: adminTimeout, Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
		}}
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// adminRefused explains a 401 or 403 from the admin API.
func (n *Node) adminRefused(resp *http.Response) string {
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusForbidden {
		return ""
	}
	if n.AdminTokenFile == "" {
		return "; the node's admin API wants a token: give the node admin_token_file, a file on upshift's host holding the token of the node's config (admin_token or admin_token_file there)"
	}
	return "; the node refuses the token in " + n.AdminTokenFile
}
