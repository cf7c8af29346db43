package api_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/allot-dev/allot/api/problem"
)

// Every problem type the API can answer with is listed in docs/errors.md: types are part of
// the API, and an undocumented one is a type clients cannot handle on purpose.
func TestEveryProblemTypeIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../docs/errors.md")
	if err != nil {
		t.Fatal(err)
	}
	// The problem package's type constants, api's own (prob…), and literal types passed to
	// problem.New.
	problemConsts := regexp.MustCompile(`(?m)^\s+[A-Z][A-Za-z]*\s*=\s*"([a-z]+(?:-[a-z]+)*)"`)
	apiConsts := regexp.MustCompile(`(?m)^\s+prob[A-Z][A-Za-z]*\s*=\s*"([a-z]+(?:-[a-z]+)*)"`)
	literal := regexp.MustCompile(`problem\.New\("([a-z-]+)"`)
	seen := map[string]bool{}
	scan := func(pattern string, res ...*regexp.Regexp) {
		files, _ := filepath.Glob(pattern)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, re := range res {
				for _, m := range re.FindAllSubmatch(src, -1) {
					seen[string(m[1])] = true
				}
			}
		}
	}
	scan("problem/*.go", problemConsts, literal)
	scan("*.go", apiConsts, literal)
	for _, must := range []string{"invalid-field", "insufficient-credits", "quota-exceeded", "subscription-canceled"} {
		if !seen[must] {
			t.Fatalf("the scan no longer finds problem type %q: fix the test", must)
		}
	}
	for typ := range seen {
		if !strings.Contains(string(doc), "`"+typ+"`") {
			t.Errorf("problem type %q is not in docs/errors.md", typ)
		}
		if problem.Title(typ) == "Error" {
			t.Errorf("problem type %q has no title of its own in the problem package", typ)
		}
	}
}
