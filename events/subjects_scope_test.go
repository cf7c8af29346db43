package events

import (
	"regexp"
	"strings"
	"testing"
)

// ValidateScope's hand-written check takes exactly what ^[a-z0-9][a-z0-9_-]{0,62}$ takes.
func TestValidateScopeAgreesWithItsPattern(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	for _, s := range []string{"", "a", "acme", "a-b_c", "-a", "_a", "A", "a.b", "a b", "ä", strings.Repeat("a", 63), strings.Repeat("a", 64), "9x", "x-", "x\n"} {
		if got, want := ValidateScope(s) == nil, re.MatchString(s); got != want {
			t.Errorf("%q: ValidateScope ok=%v, pattern %v", s, got, want)
		}
	}
}

func FuzzValidateScope(f *testing.F) {
	re := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	f.Add("acme")
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidateScope(s) == nil, re.MatchString(s); got != want {
			t.Errorf("%q: ValidateScope ok=%v, pattern %v", s, got, want)
		}
	})
}
