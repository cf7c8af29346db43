package analytics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/bustest"
)

type noMeters struct{}

func (noMeters) MetersFor(events.Scope, string) []events.Meter { return nil }

// A sink whose lease cannot be confirmed inserts nothing: another process may have taken the
// lease over (this one was paused past its time to live) and be inserting the same rows, and
// two sinks reading what ClickHouse holds and inserting the rest would both insert them. With
// the lease confirmed, the same sink copies every event.
func TestSinkInsertsNothingWithoutItsLease(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	for i := range 3 {
		data, err := events.Usage{ID: fmt.Sprintf("e%d", i), Type: "call", Customer: "c1", Time: time.Now().UTC()}.Encode()
		require.NoError(t, err)
		_, err = js.Publish(ctx, events.UsageSubject("acme", "test", "c1"), data)
		require.NoError(t, err)
	}
	conn := migratedDB(t)
	s := &Sink{JS: js, CH: conn, Meters: noMeters{}, UsageStream: bus.UsageStream, LedgerStream: bus.LedgerStream, FlushEvery: 20 * time.Millisecond, Log: slog.New(slog.DiscardHandler)}
	rows := func() uint64 {
		var n uint64
		require.NoError(t, conn.QueryRow(ctx, "SELECT count() FROM usage_events").Scan(&n))
		return n
	}

	var asked atomic.Int64
	lost := errors.New("lease lost")
	runCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := s.RunConfirmed(runCtx, func(context.Context) error { asked.Add(1); return lost })
	cancel()
	require.NoError(t, err)
	assert.Positive(t, asked.Load(), "the sink asks before inserting")
	assert.Zero(t, rows(), "nothing inserted without the lease")
	assert.Zero(t, s.Usage.Batches.Load())

	runCtx, cancel = context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.RunConfirmed(runCtx, func(context.Context) error { return nil }) }()
	require.Eventually(t, func() bool { return rows() == 3 }, 10*time.Second, 20*time.Millisecond, "with the lease confirmed every event is copied")
	cancel()
	require.NoError(t, <-done)
}
