package api_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/allot-dev/allot/api"
)

// TestOpenAPIDescribesEveryRoute keeps schemas/openapi.yaml and the server in step: every
// served path and method is documented, and nothing documented is missing from the server.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "schemas", "openapi.yaml"))
	require.NoError(t, err)
	var doc struct {
		OpenAPI string                    `yaml:"openapi"`
		Paths   map[string]map[string]any `yaml:"paths"`
	}
	require.NoError(t, yaml.Unmarshal(b, &doc))
	require.True(t, strings.HasPrefix(doc.OpenAPI, "3."))

	served := api.New(api.Options{}).Routes()
	documented := map[string][]string{}
	for path, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			documented[path] = append(documented[path], strings.ToUpper(m))
		}
	}
	for _, m := range []map[string][]string{served, documented} {
		for k := range m {
			slices.Sort(m[k])
		}
	}
	assert.Equal(t, served, documented)
}
