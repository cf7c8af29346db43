package webhooks

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/allot-dev/allot/events"
)

// A 10-credit block expires at exp; within the expirer's grace minute a usage event dated after
// exp is rated (10 credits of overage); then the expiry entry is written. The balance went
// 10 → 0 (expiry) → -10: credits.depleted is notified once (the debit saw the block gone
// already, the expiry entry saw the debit's overage: nothing was).
func TestDepletionWhenUsageFallsInTheExpiryGrace(t *testing.T) {
	f := newLedgerFixture(t)
	// Entries are stamped with the real clock: the block must still hold when it is granted.
	start := time.Now().UTC()
	exp := start.Add(1500 * time.Millisecond)
	f.write(t, events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_p", Customer: "c", Amount: cr(10), Source: "promo", Priority: 10, EffectiveAt: start.Add(-time.Hour), ExpiresAt: &exp, At: start})
	time.Sleep(time.Until(exp.Add(300 * time.Millisecond)))
	f.write(t, events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: 1, LastSeq: 1,
		Debits: []events.UsageDebited{{Customer: "c", UsageSeq: 1, Amount: cr(10), EventTime: exp.Add(5 * time.Second)}}})
	f.write(t, events.TypeCreditsExpired, events.CreditsExpired{Block: "blk_p", Customer: "c", Amount: cr(10), At: exp})
	types := f.notifyAll(t)
	depleted := 0
	for _, ty := range types {
		if ty == events.HookCreditsDepleted {
			depleted++
		}
	}
	assert.Equal(t, 1, depleted, "%v", types)
}
