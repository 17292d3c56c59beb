package nginxd

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/upshift-dev/upshift/plugins/nginx/nginxctl"
	"github.com/upshift-dev/upshift/plugins/sdk/procfs"
)

func TestStartReloadStop(t *testing.T) {
	if !nginxctl.Available() {
		t.Fatal("nginx is not installed (apt-get install nginx-light)")
	}
	release := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-time.After(5 * time.Second):
			}
		}
		w.Write([]byte("hello"))
	}))
	defer backend.Close()
	addr := strings.TrimPrefix(backend.URL, "http://")
	i, err := StartWith(context.Background(), Config{Dir: t.TempDir(), Servers: []nginxctl.Server{{Name: "s1", Addr: addr}}})
	require.NoError(t, err)
	master := i.MasterPID()
	require.NotZero(t, master)
	t.Cleanup(func() { _ = i.Stop() })
	old := nginxctl.Workers(master)
	assert.Len(t, old, 2)

	_, err = StartWith(context.Background(), Config{Dir: i.Dir})
	assert.ErrorContains(t, err, "an nginx already runs from "+i.Dir)

	resp, err := http.Get(i.URL() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	slow := make(chan int, 1)
	go func() {
		c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		r, err := c.Get(i.URL() + "/slow")
		if err != nil {
			slow <- 0
			return
		}
		r.Body.Close()
		slow <- r.StatusCode
	}()
	time.Sleep(200 * time.Millisecond)
	got, err := i.Ctl().Reload(context.Background(), 5*time.Second)
	require.NoError(t, err)
	assert.Equal(t, old, got)
	assert.NotEmpty(t, nginxctl.ShuttingDown(master), "the worker with the slow request finishes it")
	left, err := nginxctl.WaitExited(context.Background(), got, 100*time.Millisecond, nil)
	assert.Error(t, err)
	assert.Equal(t, 1, left, "one old worker still serves the slow request")
	close(release)
	_, err = nginxctl.WaitExited(context.Background(), got, 5*time.Second, nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, <-slow)
	assert.Empty(t, nginxctl.ShuttingDown(master))

	all := append([]int{master}, nginxctl.Workers(master)...)
	require.NoError(t, i.Stop())
	for _, p := range all {
		assert.False(t, procfs.Alive(p), "pid %d left running", p)
	}
	assert.False(t, i.Running())
	require.NoError(t, i.Stop(), "stopping a stopped nginx is fine")
}
