package projector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// A customer with no credit blocks (quota-only, or usage only in overage) whose account is
// copied on write after a snapshot or digest still encodes as a fresh fold does: the copy
// wrote "blocks":[] where the fold writes "blocks":null, and the live digest stopped equalling
// the replay's.
func TestCopyOnWriteKeepsBlocksEncoding(t *testing.T) {
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	day := events.Period{Unit: "day", Count: 1}
	inc := func(n string) []byte {
		b, err := json.Marshal(events.QuotaIncremented{Customer: "q", At: at, Items: []events.QuotaUse{{Quota: "api", Amount: events.MustDecimal(n), Period: day, At: at}}})
		require.NoError(t, err)
		return b
	}
	lane := events.QuotaLaneSubject("acme", "live", 0)
	stream := []struct {
		subj, typ string
		data      []byte
	}{
		{lane, events.TypeQuotaIncremented, inc("1")},
		{lane, events.TypeQuotaIncremented, inc("2")},
	}
	replay := NewLedger()
	for i, e := range stream {
		require.NoError(t, replay.Apply(uint64(i+1), e.subj, e.typ, e.data))
	}
	_, want, err := replay.Digest()
	require.NoError(t, err)

	live := NewLedger()
	require.NoError(t, live.Apply(1, stream[0].subj, stream[0].typ, stream[0].data))
	_, _ = json.Marshal(live) // a periodic snapshot (or a digest request)
	require.NoError(t, live.Apply(2, stream[1].subj, stream[1].typ, stream[1].data))
	_, got, err := live.Digest()
	require.NoError(t, err)
	lb, _ := json.Marshal(live)
	rb, _ := json.Marshal(replay)
	require.Equal(t, want, got, "live %s\nreplay %s", lb, rb)
}
