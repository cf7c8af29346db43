package projector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

func TestLedgerFoldSkipsReplayedDebits(t *testing.T) {
	l := NewLedger()
	subj := events.LedgerSubject("acme", "live", "user@example.com")
	debit := func(usageSeq uint64, idx int, amt events.Credits) []byte {
		b, err := json.Marshal(events.UsageRated{Customer: "user@example.com", FirstSeq: usageSeq, LastSeq: usageSeq,
			Debits: []events.UsageDebited{{ID: "d", Customer: "user@example.com", UsageSeq: usageSeq, RuleIndex: idx, Amount: amt}}})
		require.NoError(t, err)
		return b
	}
	seq := uint64(0)
	apply := func(typ string, b []byte) {
		seq++
		require.NoError(t, l.Apply(seq, subj, typ, b))
	}
	apply(events.TypeUsageRated, debit(10, 0, 5*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(10, 1, 1*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(12, 0, 2*events.MicroPerCredit))
	// A re-rate after a crash writes (10,1) and (12,0) again, past the dedup window.
	apply(events.TypeUsageRated, debit(10, 1, 1*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(12, 0, 2*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(13, 0, -3*events.MicroPerCredit))
	u, _ := json.Marshal(events.UsageRated{FirstSeq: 14, LastSeq: 14, Unrated: []events.UsageUnrated{{UsageSeq: 14}}})
	apply(events.TypeUsageRated, u)
	apply(events.TypeUsageRated, u)
	// Redelivery of an old ledger sequence changes nothing.
	require.NoError(t, l.Apply(2, subj, events.TypeUsageRated, debit(99, 0, 100)))

	a, ok := l.Account(events.Scope{Product: "acme", Env: "live"}, "user@example.com")
	require.True(t, ok)
	assert.Equal(t, events.Credits(8*events.MicroPerCredit), a.Debited)
	assert.Equal(t, events.Credits(3*events.MicroPerCredit), a.CreditedBack)
	assert.Equal(t, events.Credits(-5*events.MicroPerCredit), a.Balance(time.Now()))
	assert.Equal(t, int64(1), a.Unrated)
	assert.Equal(t, uint64(8), l.Seq())
	assert.Equal(t, int64(5), l.Items(), "four debits and one unrated event, each once")

	// One batch overlapping what was applied (a re-rate that split events differently).
	b, _ := json.Marshal(events.UsageRated{FirstSeq: 13, LastSeq: 20, Debits: []events.UsageDebited{
		{UsageSeq: 13, Amount: -3 * events.MicroPerCredit}, {UsageSeq: 20, Amount: 7 * events.MicroPerCredit}, {UsageSeq: 20, RuleIndex: 1, Amount: 1}}})
	require.NoError(t, l.Apply(10, subj, events.TypeUsageRated, b))
	a, _ = l.Account(events.Scope{Product: "acme", Env: "live"}, "user@example.com")
	assert.Equal(t, events.Credits(15*events.MicroPerCredit+1), a.Debited)
	_, ok = l.Account(events.Scope{Product: "acme", Env: "test"}, "user@example.com")
	assert.False(t, ok, "scopes never mix")
	require.Error(t, l.Apply(11, "allot.usage.a.b.c", events.TypeUsageRated, nil))
}
