package webhooks

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSignAndVerify(t *testing.T) {
	s1, s2 := NewSecret(), NewSecret()
	require.True(t, strings.HasPrefix(s1, "whsec_"))
	now := time.Now()
	body := []byte(`{"type":"credits.granted","data":{"amount":"10"}}`)
	sig, err := Sign([]string{s1, s2}, "msg_1", now, body)
	require.NoError(t, err)
	assert.Len(t, strings.Fields(sig), 2, "one signature per secret during a rotation")
	ts := strconv.FormatInt(now.Unix(), 10)
	assert.NoError(t, Verify(s1, "msg_1", ts, sig, body, now, 5*time.Minute))
	assert.NoError(t, Verify(s2, "msg_1", ts, sig, body, now, 5*time.Minute))
	assert.Error(t, Verify(NewSecret(), "msg_1", ts, sig, body, now, 5*time.Minute))
	assert.Error(t, Verify(s1, "msg_1", ts, sig, []byte(`{"tampered":true}`), now, 5*time.Minute))
	assert.Error(t, Verify(s1, "msg_2", ts, sig, body, now, 5*time.Minute))
	assert.Error(t, Verify(s1, "msg_1", ts, sig, body, now.Add(time.Hour), 5*time.Minute), "too old")
}

// TestStandardWebhooksLibraryAgrees checks allot's signatures with the Standard Webhooks
// reference library for JavaScript (npm standardwebhooks), run with node: a library nobody
// here wrote is the judge.
func TestStandardWebhooksLibraryAgrees(t *testing.T) {
	npm, err1 := exec.LookPath("npm")
	node, err2 := exec.LookPath("node")
	if err1 != nil || err2 != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("node and npm are needed under CI to run the Standard Webhooks verifier")
		}
		t.Skip("SKIPPING: no node/npm for the Standard Webhooks verifier")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "verify.js"} {
		b, err := os.ReadFile(filepath.Join("testdata", "verifier", f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o600))
	}
	install := exec.Command(npm, "install", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	out, err := install.CombinedOutput()
	require.NoError(t, err, "npm install: %s", out)

	now := time.Now()
	old, cur := NewSecret(), NewSecret()
	type tc struct {
		Secret  string            `json:"secret"`
		Payload string            `json:"payload"`
		Headers map[string]string `json:"headers"`
	}
	mk := func(secrets []string, verifyWith, id, body string, at time.Time) tc {
		sig, err := Sign(secrets, id, at, []byte(body))
		require.NoError(t, err)
		return tc{verifyWith, body, map[string]string{"webhook-id": id, "webhook-timestamp": strconv.FormatInt(at.Unix(), 10), "webhook-signature": sig}}
	}
	body := `{"id":"msg_1","type":"credits.low","customer":"cust-42","sequence":7,"data":{"balance":"4.5"}}`
	cases := []tc{
		mk([]string{cur}, cur, "msg_1", body, now),                      // ok
		mk([]string{old, cur}, old, "msg_2", body, now),                 // ok: rotation, old secret
		mk([]string{old, cur}, cur, "msg_3", body, now),                 // ok: rotation, new secret
		mk([]string{old}, cur, "msg_4", body, now),                      // fail: not signed with this secret
		mk([]string{cur}, cur, "msg_5", body, now.Add(-10*time.Minute)), // fail: too old
	}
	tampered := mk([]string{cur}, cur, "msg_6", body, now)
	tampered.Payload = strings.Replace(body, "4.5", "45", 1)
	cases = append(cases, tampered) // fail
	in, _ := json.Marshal(cases)
	run := exec.Command(node, "verify.js")
	run.Dir = dir
	run.Stdin = strings.NewReader(string(in))
	out, err = run.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, len(cases), "%s", out)
	assert.Equal(t, "ok", lines[0])
	assert.Equal(t, "ok", lines[1])
	assert.Equal(t, "ok", lines[2])
	assert.True(t, strings.HasPrefix(lines[3], "fail"), lines[3])
	assert.True(t, strings.HasPrefix(lines[4], "fail"), lines[4])
	assert.True(t, strings.HasPrefix(lines[5], "fail"), lines[5])
}

// DESIGN.md (Webhooks): retries after 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (7 retries), a
// 15 s timeout per attempt. The e2e test runs the schedule scaled down and checks its length;
// this pins the values.
func TestRetryScheduleIsTheSpecs(t *testing.T) {
	want := []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}
	assert.Equal(t, want, DefaultSchedule)
	assert.Equal(t, 15*time.Second, time.Duration(DefaultTimeout))
}
