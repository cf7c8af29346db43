package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReadmeFirstSession runs the README's first session as written: its config file, its
// events, and the answers its comments promise.
func TestReadmeFirstSession(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	require.NoError(t, err)
	readme := string(b)
	cfg := regexp.MustCompile(`(?s)cat > allot\.yaml <<'YAML'\n(.*?)\nYAML\n`).FindStringSubmatch(readme)
	require.NotNil(t, cfg, "the README's config block")
	key := regexp.MustCompile(`KEY=(ak_\S+)`).FindStringSubmatch(readme)
	require.NotNil(t, key)
	bodies := regexp.MustCompile(`(?s)/v1/events -H .*?-d '(.*?)'`).FindAllStringSubmatch(readme, 2)
	require.Len(t, bodies, 2, "the README's two event requests")

	path := filepath.Join(t.TempDir(), "allot.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg[1]), 0o600))
	p := startServe(t, t.TempDir(), "--config", path)
	post := func(body string) (int, map[string]any) {
		status, res, err := p.request("POST", "/v1/events", strings.TrimSpace(body), "Authorization", "Bearer "+key[1])
		require.NoError(t, err)
		return status, res
	}
	status, res := post(bodies[0][1])
	require.Equal(t, 202, status, res)
	assert.EqualValues(t, 1, res["accepted"])
	rej := res["rejected"].([]any)
	require.Len(t, rej, 1)
	assert.Equal(t, "data.tokens", rej[0].(map[string]any)["problem"].(map[string]any)["field"])
	status, res = post(bodies[1][1])
	require.Equal(t, 202, status, res)
	assert.EqualValues(t, 1, res["duplicates"])
	want := regexp.MustCompile(`# → \{"balance":"(-?[0-9.]+)"`).FindStringSubmatch(readme)
	require.NotNil(t, want)
	waitFor(t, 10*time.Second, "the README's balance", func() bool {
		_, bal, _ := p.request("GET", "/v1/customers/cust-42/balance", "", "Authorization", "Bearer "+key[1])
		return bal["balance"] == want[1]
	})
}
