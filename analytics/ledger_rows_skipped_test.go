package analytics

import (
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// The ledger copy writes rows only for what the projection applied: a retried grant whose block
// exists, and the expiry of a hold that was released already, moved nothing, and their rows
// made the balance sheet count the grant twice and the hold as released and expired.
func TestLedgerRowsLeaveOutWhatTheProjectionSkipped(t *testing.T) {
	l := projector.NewLedger()
	subj := events.LedgerSubject("acme", "live", "c1")
	at := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	g := events.CreditsGranted{Block: "blk_1", Customer: "c1", Amount: 5_000_000, Source: "wallet", Priority: 100, EffectiveAt: at, At: at}
	entries := []struct {
		typ string
		v   any
	}{
		{events.TypeCreditsGranted, g}, {events.TypeCreditsGranted, g},
		{events.TypeReservationCreated, events.ReservationCreated{Reservation: "res_1", Customer: "c1", Amount: 1_000_000, ExpiresAt: at.Add(time.Minute), At: at}},
		{events.TypeReservationReleased, events.ReservationReleased{Reservation: "res_1", Customer: "c1", At: at.Add(30 * time.Second)}},
		{events.TypeReservationExpired, events.ReservationReleased{Reservation: "res_1", Customer: "c1", At: at.Add(time.Minute)}},
	}
	count := map[string]int{}
	var granted int64
	for i, e := range entries {
		data, err := json.Marshal(e.v)
		require.NoError(t, err)
		applied, err := l.ApplyItems(uint64(i+1), subj, e.typ, data)
		require.NoError(t, err)
		for _, row := range ledgerRows(uint64(i+1), subj, e.typ, data, at, applied, new(atomic.Int64)) {
			count[row[5].(string)]++
			if row[5] == events.TypeCreditsGranted {
				granted += row[9].(int64)
			}
		}
	}
	assert.EqualValues(t, 5_000_000, granted)
	assert.Equal(t, 1, count[events.TypeCreditsGranted])
	assert.Equal(t, 1, count[events.TypeReservationReleased])
	assert.Equal(t, 0, count[events.TypeReservationExpired])
}
