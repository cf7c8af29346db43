package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMetricsAreDocumented keeps docs/metrics.md complete: every metric name registered in
// the code must have a row there, and every row must name a metric the code registers.
func TestMetricsAreDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/metrics.md")
	require.NoError(t, err)
	registered := map[string]bool{}
	name := regexp.MustCompile(`"(allot_[a-z0-9_]+)"`)
	err = filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range name.FindAllSubmatch(src, -1) {
			registered[string(m[1])] = true
		}
		return nil
	})
	require.NoError(t, err)
	require.NotEmpty(t, registered)
	for n := range registered {
		assert.Contains(t, string(doc), "| `"+n+"` |", "%s is registered but not in docs/metrics.md", n)
	}
	for _, m := range regexp.MustCompile("(?m)^\\| `(allot_[a-z0-9_]+)` \\|").FindAllSubmatch(doc, -1) {
		assert.True(t, registered[string(m[1])], "docs/metrics.md lists %s, which nothing registers", m[1])
	}
}
