package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"
)

// TestDeployFilesParse keeps the shipped deployment files well-formed (they cannot be run
// here: no Docker, no cluster), and their allot arguments real.
func TestDeployFilesParse(t *testing.T) {
	var files []string
	filepath.WalkDir(filepath.Join("..", "..", "deploy"), func(p string, d os.DirEntry, err error) error {
		if err == nil && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			files = append(files, p)
		}
		return nil
	})
	require.GreaterOrEqual(t, len(files), 4)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var doc any
			err := dec.Decode(&doc)
			if errors.Is(err, io.EOF) {
				break
			}
			require.NoError(t, err, f)
		}
		for _, role := range []string{"roles\", \"", "ALLOT_ROLES: \""} {
			for _, part := range strings.Split(string(b), role)[1:] {
				list := part[:strings.IndexByte(part, '"')]
				_, err := parseRoles(list)
				assert.NoError(t, err, "%s: roles %q", f, list)
			}
		}
	}
}
