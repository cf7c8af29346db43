package events

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestToken(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cust_42", "cust_42"},
		{"a.b@c", "a~2eb~40c"},
		{"", "~"},
		{"~", "~7e"},
		{"x y*>", "x~20y~2a~3e"},
		{"Ünï", "~c3~9cn~c3~af"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got := Token(tt.in)
			assert.Equal(t, tt.want, got)
			back, err := ParseToken(got)
			require.NoError(t, err)
			assert.Equal(t, tt.in, back)
		})
	}
	for _, bad := range []string{"a.b", "a~2", "a~zz", "a~2E", "a b"} {
		_, err := ParseToken(bad)
		assert.Error(t, err, bad)
	}
}

// FuzzToken: every identifier maps to one subject-safe token and back, and distinct
// identifiers never share a token (the mapping is injective because it is reversible).
func FuzzToken(f *testing.F) {
	for _, s := range []string{"", "a", "a.b", "~7e", "cust-1", "\x00\xff", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok := Token(s)
		if tok == "" || strings.ContainsAny(tok, ". \t\r\n*>") {
			t.Fatalf("token %q of %q is not subject-safe", tok, s)
		}
		back, err := ParseToken(tok)
		if err != nil || back != s {
			t.Fatalf("%q → %q → %q, %v", s, tok, back, err)
		}
	})
}

func TestUsageSubjects(t *testing.T) {
	subj := UsageSubject("acme", "live", "user@example.com")
	assert.Equal(t, "allot.usage.acme.live.user~40example~2ecom", subj)
	a, err := ParseUsageSubject(subj)
	require.NoError(t, err)
	assert.Equal(t, UsageAddress{Product: "acme", Env: "live", Customer: "user@example.com", Partition: -1}, a)
	a, err = ParseUsageSubject("allot.usage.5.acme.live.user~40example~2ecom")
	require.NoError(t, err)
	assert.Equal(t, 5, a.Partition)
	assert.Equal(t, "user@example.com", a.Customer)
	assert.Equal(t, "acme", a.Product)
	for _, bad := range []string{"allot.ledger.a.b.c", "allot.usage.a.b", "allot.usage.x.a.b.c", "allot.usage.1.a.b.c.d", "allot.usage.-1.a.b.c"} {
		_, err := ParseUsageSubject(bad)
		assert.Error(t, err, bad)
	}
	assert.Equal(t, "allot.usage.3.>", UsagePartitionFilter(3))
	assert.Equal(t, "allot.ledger.acme.live.c1", LedgerSubject("acme", "live", "c1"))
	assert.Equal(t, "allot.config.acme.live.meter.tokens~2ein", ConfigSubject("acme", "live", KindMeter, "tokens.in"))
	assert.Equal(t, "acme:live:e1", UsageMsgID("acme", "live", "e1"))
}

func TestValidateScope(t *testing.T) {
	for _, ok := range []string{"acme", "live", "a1", "my-product", "prd"} {
		assert.NoError(t, ValidateScope(ok), ok)
	}
	for _, bad := range []string{"", "Acme", "a.b", "a*", "-x", strings.Repeat("a", 64)} {
		assert.ErrorIs(t, ValidateScope(bad), ErrBadScope, bad)
	}
}

func TestCustomerID(t *testing.T) {
	a := CustomerID(Scope{Product: "acme", Env: "live"}, "cust-42")
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, a)
	assert.Equal(t, a, CustomerID(Scope{Product: "acme", Env: "live"}, "cust-42"), "stable")
	assert.NotEqual(t, a, CustomerID(Scope{Product: "acme", Env: "test"}, "cust-42"), "scoped")
	assert.NotEqual(t, a, CustomerID(Scope{Product: "acme", Env: "live"}, "cust-43"))
	// Pinned: the id of a customer must never change between versions of allot.
	assert.Equal(t, "92f33272-8528-541c-872d-f2d52283c611", a) // Python: uuid.uuid5(ns, "acme\x00live\x00cust-42")
}

func TestParseLedgerSubject(t *testing.T) {
	for _, cust := range []string{"cust-1", "user@example.com", "a.b c~d", ""} {
		a, err := ParseLedgerSubject(LedgerSubject("acme", "live", cust))
		if assert.NoError(t, err, cust) {
			assert.Equal(t, LedgerAddress{Product: "acme", Env: "live", Customer: cust}, a)
		}
	}
	for _, s := range []string{"", "allot.ledger", "allot.ledger.acme.live", "allot.ledger.acme.live.c.d", "allot.usage.acme.live.c",
		"allotXledger.acme.live.c", "allot.ledger.acme.live.bad*token", "allot.ledger.acme.live.~q", "allot.ledger.acme.live.~q01",
		"allot.ledger.acme.live.~q-1", "allot.ledger.acme.live.~qx"} {
		_, err := ParseLedgerSubject(s)
		assert.Error(t, err, s)
	}
}

func TestQuotaLaneSubjects(t *testing.T) {
	for _, lane := range []int{0, 7, 12} {
		a, err := ParseLedgerSubject(QuotaLaneSubject("acme", "live", lane))
		require.NoError(t, err)
		assert.Equal(t, LedgerAddress{Product: "acme", Env: "live", Lane: "~q" + strconv.Itoa(lane)}, a)
	}
	// No customer's subject is a lane's: Token escapes '~' as "~7e", never "~q".
	for _, cust := range []string{"~q0", "~q", "q0", "~"} {
		a, err := ParseLedgerSubject(LedgerSubject("acme", "live", cust))
		require.NoError(t, err)
		assert.Equal(t, LedgerAddress{Product: "acme", Env: "live", Customer: cust}, a)
	}
	for _, cust := range []string{"a", "b", "cust-1", ""} {
		assert.Zero(t, QuotaLane(cust, 1))
	}
	// With several lanes, customers spread over all of them, each always to the same one.
	count := map[int]int{}
	for i := 0; i < 8000; i++ {
		cust := fmt.Sprint("cust-", i)
		l := QuotaLane(cust, 8)
		require.True(t, l >= 0 && l < 8, "lane %d", l)
		require.Equal(t, l, QuotaLane(cust, 8), "a customer's lane is stable")
		count[l]++
	}
	for l := 0; l < 8; l++ {
		assert.InDelta(t, 1000, count[l], 150, "lane %d", l)
	}
}
