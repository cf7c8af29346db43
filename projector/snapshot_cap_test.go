package projector

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

type slowStore struct {
	jetstream.ObjectStore
	puts atomic.Int32
	lag  time.Duration
}

func (s *slowStore) PutBytes(ctx context.Context, name string, b []byte) (*jetstream.ObjectInfo, error) {
	time.Sleep(s.lag) // a replicated object store's round trips, no CPU of ours
	s.puts.Add(1)
	return &jetstream.ObjectInfo{}, nil
}

// The 5%-of-a-core cap (snapshotShare) counts the encoding, not the store's latency: a 300 ms
// put of a tiny projection (encoding takes microseconds) pushed the next snapshot 6 s out,
// where the period asked for 50 ms (one snapshot in 3 s; about eight now).
func TestSnapshotCapLeavesOutStoreLatency(t *testing.T) {
	l := NewLedger()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	seq := uint64(0)
	apply := func() {
		seq++
		b, _ := json.Marshal(events.CreditsGranted{Block: "blk", Customer: "c", Amount: 1, Source: "wallet", Priority: 100, EffectiveAt: at, At: at})
		_ = l.Apply(seq, events.LedgerSubject("acme", "live", "c"), events.TypeCreditsGranted, b)
	}
	apply()
	st := &slowStore{lag: 300 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = SaveSnapshots(ctx, st, l, 50*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	stop := time.After(3 * time.Second)
loop:
	for {
		select {
		case <-stop:
			break loop
		case <-time.After(20 * time.Millisecond):
			apply()
		}
	}
	n := st.puts.Load()
	cancel()
	<-done
	if n < 3 {
		t.Fatalf("%d snapshots in 3 s with a 50 ms period and ~0 encoding cost (each put waits 300 ms on the store)", n)
	}
}
