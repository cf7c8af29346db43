package main

// End-to-end tests of the real binary: they build `allot`, run `allot serve` as a child
// process on free loopback ports, and talk to it over HTTP and NATS like users do.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var allotBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "allot-bin-")
	if err != nil {
		panic(err)
	}
	allotBin = filepath.Join(dir, "allot")
	out, err := exec.Command("go", "build", "-o", allotBin, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building allot: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

const testKey = "ak_test_e2e_admin_key"

const testConfig = `keys:
  - key: ` + testKey + `
    product: acme
    env: test
    admin: true
meters:
  tokens:
    event_type: llm
    aggregation: sum
    value_property: tokens
`

// freePort returns a loopback port nothing listens on, never one it returned before in this
// test binary: the kernel may hand a just-closed port out again, and two of a test's servers
// (HTTP and NATS, say) on one port fail to start.
func freePort(t *testing.T) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !handedOut.ports[port] {
			handedOut.ports[port] = true
			return port
		}
	}
}

var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

type proc struct {
	t        *testing.T
	cmd      *exec.Cmd
	httpURL  string
	natsURL  string
	mu       sync.Mutex
	stderr   bytes.Buffer
	exited   chan struct{}
	exitCode int
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// startServe runs `allot serve` with args plus free ports, and waits for /healthz.
func startServe(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	p := startServeNoWait(t, dataDir, extra...)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.exited:
			t.Fatalf("allot serve exited with %d:\n%s", p.exitCode, p.logs())
		default:
		}
		resp, err := http.Get(p.httpURL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("allot serve did not become healthy:\n%s", p.logs())
	return nil
}

func startServeNoWait(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	hp, np := freePort(t), freePort(t)
	args := []string{"serve", "--data", dataDir, "--http", fmt.Sprintf("127.0.0.1:%d", hp), "--nats-listen", fmt.Sprintf("127.0.0.1:%d", np),
		"--webhooks-allow-private"} // the tests' endpoints listen on loopback
	args = append(args, extra...)
	cmd := exec.Command(allotBin, args...)
	p := &proc{t: t, cmd: cmd, httpURL: fmt.Sprintf("http://127.0.0.1:%d", hp), natsURL: fmt.Sprintf("nats://127.0.0.1:%d", np), exited: make(chan struct{})}
	pr, pw := io.Pipe()
	cmd.Stderr = pw
	cmd.Stdout = pw
	read := make(chan struct{}) // closed once the last line is in p.stderr
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			p.mu.Lock()
			p.stderr.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
		}
	}()
	require.NoError(t, cmd.Start())
	go func() {
		err := cmd.Wait()
		pw.Close()
		<-read // so that logs() after exited holds everything the process wrote
		p.exitCode = cmd.ProcessState.ExitCode()
		_ = err
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// stop sends sig and waits for the exit code.
func (p *proc) stop(sig syscall.Signal) int {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Signal(sig))
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("allot did not exit after %v:\n%s", sig, p.logs())
	}
	return p.exitCode
}

func (p *proc) waitExit(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
		return p.exitCode
	case <-time.After(timeout):
		p.t.Fatalf("allot did not exit within %v:\n%s", timeout, p.logs())
		return -1
	}
}

func (p *proc) post(path, contentType, body string) (int, map[string]any) {
	p.t.Helper()
	req, err := http.NewRequest("POST", p.httpURL+path, strings.NewReader(body))
	require.NoError(p.t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", contentType)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(p.t, err)
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func writeConfig(t *testing.T) string { return writeConfigText(t, testConfig) }

// writeConfigText writes a configuration file for one test and returns its path.
func writeConfigText(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "allot.yaml")
	require.NoError(t, os.WriteFile(path, []byte(text), 0o600))
	return path
}

func batch(prefix string, n int) string {
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `{"id":"%s-%d","type":"llm","customer":"cust-%d","data":{"tokens":"%d.5"}}`, prefix, i, i%7, i)
	}
	b.WriteString("]")
	return b.String()
}

func usageMsgs(t *testing.T, natsURL string) uint64 {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	s, err := js.Stream(context.Background(), "ALLOT_USAGE")
	require.NoError(t, err)
	info, err := s.Info(context.Background())
	require.NoError(t, err)
	return info.State.Msgs
}

func TestServeRestartKeepsEventsAndDedup(t *testing.T) {
	data := t.TempDir()
	cfg := writeConfig(t)
	p := startServe(t, data, "--config", cfg)
	status, body := p.post("/v1/events", "application/json", batch("a", 300))
	require.Equal(t, 202, status, body)
	require.EqualValues(t, 300, body["accepted"])
	require.EqualValues(t, 300, usageMsgs(t, p.natsURL))
	require.Equal(t, 0, p.stop(syscall.SIGTERM), p.logs())
	assert.Contains(t, p.logs(), "stopped")

	// Restart on the same folder: every event is still there, and re-sending the same ids
	// is reported as duplicates; the config file is applied again without new changes.
	p = startServe(t, data, "--config", cfg)
	assert.Contains(t, p.logs(), "changes=0")
	require.EqualValues(t, 300, usageMsgs(t, p.natsURL))
	status, body = p.post("/v1/events", "application/json", batch("a", 300))
	require.Equal(t, 202, status, body)
	assert.EqualValues(t, 0, body["accepted"])
	assert.EqualValues(t, 300, body["duplicates"])
	status, body = p.post("/v1/events", "application/json", batch("b", 50))
	require.Equal(t, 202, status, body)
	assert.EqualValues(t, 50, body["accepted"])

	// A SIGKILL right after the 202 loses nothing that was acknowledged.
	require.Equal(t, -1, p.stop(syscall.SIGKILL))
	p = startServe(t, data)
	require.EqualValues(t, 350, usageMsgs(t, p.natsURL))
	status, body = p.post("/v1/events", "application/json", batch("b", 50))
	require.Equal(t, 202, status, body)
	assert.EqualValues(t, 50, body["duplicates"])
	require.Equal(t, 0, p.stop(syscall.SIGINT))
}

func TestServeRefusesALockedDataDir(t *testing.T) {
	data := t.TempDir()
	first := startServe(t, data)
	second := startServeNoWait(t, data)
	code := second.waitExit(20 * time.Second)
	assert.Equal(t, 3, code, second.logs())
	assert.Contains(t, second.logs(), "locked by another process")
	// The first one is unharmed.
	resp, err := http.Get(first.httpURL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
}

func TestServeRefusesAnUnusableDataDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	p := startServeNoWait(t, filepath.Join(file, "data"))
	assert.Equal(t, 3, p.waitExit(20*time.Second), p.logs())
	assert.Contains(t, p.logs(), "data directory is not usable")
}

func TestServeBadConfigIsExit2(t *testing.T) {
	path := filepath.Join(t.TempDir(), "allot.yaml")
	require.NoError(t, os.WriteFile(path, []byte("keys:\n  - key: ak_live_short\n    product: acme\n    env: test\n"), 0o600))
	p := startServeNoWait(t, t.TempDir(), "--config", path)
	assert.Equal(t, 2, p.waitExit(20*time.Second), p.logs())
	assert.Contains(t, p.logs(), "keys[0].key")
}

func TestServeOnExternalNATS(t *testing.T) {
	// An external server: another allot's embedded NATS will do, it is a real nats-server.
	ext := startServe(t, t.TempDir())
	data := filepath.Join(t.TempDir(), "unused")
	p := startServe(t, data, "--nats-url", ext.natsURL, "--config", writeConfig(t))
	status, body := p.post("/v1/events", "application/json", batch("x", 10))
	require.Equal(t, 202, status, body)
	require.EqualValues(t, 10, usageMsgs(t, ext.natsURL))
	_, err := os.Stat(data)
	assert.True(t, os.IsNotExist(err), "--nats-url must not start an embedded server")

	unreachable := startServeNoWait(t, t.TempDir(), "--nats-url", fmt.Sprintf("nats://127.0.0.1:%d", freePort(t)))
	assert.Equal(t, 4, unreachable.waitExit(30*time.Second), unreachable.logs())
}

func TestEnvironmentVariablesSetFlags(t *testing.T) {
	hp := freePort(t)
	cmd := exec.Command(allotBin, "serve", "--nats-listen", "off")
	cmd.Env = append(os.Environ(), "ALLOT_DATA="+t.TempDir(), fmt.Sprintf("ALLOT_HTTP=127.0.0.1:%d", hp))
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", hp))
		if err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("ALLOT_HTTP was not honoured")
}
