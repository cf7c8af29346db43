package projector

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A rated entry (as an earlier version wrote them) holding a 5-credit debit of one event and,
// from another event of the batch with quantity 1e-130, a quota use whose plain text is 132
// characters: it decodes, and the debit reaches the balance. Decimals over 128 characters were
// refused, the whole entry skipped as unreadable, and every debit of the batch lost.
func TestLongQuantityKeepsTheBatchsDebits(t *testing.T) {
	at := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	day := events.Period{Unit: events.UnitDay, Count: 1, Mode: events.ModeCalendar, TimeZone: "UTC"}
	r := events.UsageRated{ID: "rtd_1", Customer: "c1", FirstSeq: 10, LastSeq: 11,
		Debits: []events.UsageDebited{{ID: "d1", Kind: events.KindDebit, Customer: "c1", EventID: "e10", Rule: "price", RuleVersion: 1,
			Quantity: events.MustDecimal("5"), Amount: 5 * events.MicroPerCredit, EventTime: at, UsageSeq: 10}},
		Quotas: []events.QuotaUse{{Quota: "tokens-daily", Amount: events.MustDecimal("1e-130"), Period: day, At: at, UsageSeq: 11}},
	}
	data, err := r.AppendJSON(nil)
	require.NoError(t, err)
	l := NewLedger()
	err = l.Apply(1, events.LedgerSubject("acme", "live", "c1"), events.TypeUsageRated, data)
	assert.NoError(t, err)
	a, ok := l.Account(events.Scope{Product: "acme", Env: "live"}, "c1")
	require.True(t, ok, "the account exists")
	assert.Equal(t, events.Credits(5*events.MicroPerCredit), a.Debited, "the 5-credit debit of event 10 is counted")
}

// Each debit fits the ledger's int64 (rating checks it), but their sum need not: the overage
// holds at the end of the range (it wrapped, and the balance of a customer without grants
// turned hugely positive after two enormous debits).
func TestOverageDoesNotWrap(t *testing.T) {
	l := NewLedger()
	subj := events.LedgerSubject("acme", "live", "c1")
	big := events.Credits(5_000_000_000_000 * events.MicroPerCredit) // 5e12 credits: a flat price rating accepts
	for i := uint64(1); i <= 2; i++ {
		r := events.UsageRated{ID: "rtd", Customer: "c1", FirstSeq: i, LastSeq: i, Debits: []events.UsageDebited{{ID: "d", Kind: events.KindDebit,
			Customer: "c1", Rule: "flat", RuleVersion: 1, Quantity: events.MustDecimal("1"), Amount: big, EventTime: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC), UsageSeq: i}}}
		data, err := r.AppendJSON(nil)
		require.NoError(t, err)
		require.NoError(t, l.Apply(i, subj, events.TypeUsageRated, data))
	}
	a, _ := l.Account(events.Scope{Product: "acme", Env: "live"}, "c1")
	assert.Less(t, int64(a.Balance(time.Now())), int64(0), "after 1e13 credits of usage and no grants the balance is negative")
}
