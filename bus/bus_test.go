package bus

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

func TestEmbeddedLocksItsDataDir(t *testing.T) {
	dir := t.TempDir()
	a, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Port: -2})
	require.NoError(t, err)
	_, err = StartEmbedded(EmbeddedOptions{DataDir: dir, Port: -2})
	require.ErrorIs(t, err, ErrDataDirLocked)
	a.Shutdown()
	b, err := StartEmbedded(EmbeddedOptions{DataDir: dir, Port: -2})
	require.NoError(t, err, "the lock is released on shutdown")
	b.Shutdown()
}

func TestEmbeddedRejectsAnUnusableDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	start := time.Now()
	_, err := StartEmbedded(EmbeddedOptions{DataDir: filepath.Join(file, "sub"), Port: -2})
	require.ErrorIs(t, err, ErrDataDirUnusable)
	assert.Less(t, time.Since(start), 15*time.Second, "a bad folder must fail, not hang until the readiness timeout")
	_, err = StartEmbedded(EmbeddedOptions{DataDir: "", Port: -2})
	require.True(t, errors.Is(err, ErrDataDirUnusable))
}

func TestEmbeddedFlushesEverySecond(t *testing.T) {
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: -2})
	require.NoError(t, err)
	defer e.Shutdown()
	assert.Equal(t, time.Second, e.Server.JetStreamConfig().SyncInterval)
}

// embeddedJetStream starts an embedded server of its own for the test and connects to it.
func embeddedJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	e, err := StartEmbedded(EmbeddedOptions{DataDir: t.TempDir(), Port: -2})
	require.NoError(t, err)
	t.Cleanup(e.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(e.Server))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func TestEnsureStreams(t *testing.T) {
	js := embeddedJetStream(t)
	ctx := context.Background()
	opts := StreamOptions{UsagePartitions: 4, DedupWindow: 10 * time.Minute}
	require.NoError(t, EnsureStreams(ctx, js, opts))
	require.NoError(t, EnsureStreams(ctx, js, opts), "idempotent")

	s, err := js.Stream(ctx, UsageStream)
	require.NoError(t, err)
	assert.Equal(t, 10*time.Minute, s.CachedInfo().Config.Duplicates)
	assert.Equal(t, jetstream.FileStorage, s.CachedInfo().Config.Storage)

	// Every customer's events land in one partition, the same each time.
	seen := map[string]int{}
	for i := 0; i < 40; i++ {
		cust := []string{"a", "b", "user@example.com", "c-9"}[i%4]
		ack, err := js.Publish(ctx, events.UsageSubject("acme", "live", cust), []byte(`{}`))
		require.NoError(t, err)
		m, err := s.GetMsg(ctx, ack.Sequence)
		require.NoError(t, err)
		addr, err := events.ParseUsageSubject(m.Subject)
		require.NoError(t, err)
		require.Equal(t, cust, addr.Customer)
		require.True(t, addr.Partition >= 0 && addr.Partition < 4, m.Subject)
		if p, ok := seen[cust]; ok {
			require.Equal(t, p, addr.Partition, "customer %s moved partition", cust)
		}
		seen[cust] = addr.Partition
	}

	// Changing the partition count of an existing stream is refused.
	err = EnsureStreams(ctx, js, StreamOptions{UsagePartitions: 8})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "refusing")
}

// The number of quota lanes is set when the ledger stream is created, read back by every
// process, kept when a process asks for none, and never changed.
func TestQuotaLanesAreFixedAtCreation(t *testing.T) {
	js := embeddedJetStream(t)
	ctx := context.Background()

	require.NoError(t, EnsureStreams(ctx, js, StreamOptions{QuotaLanes: 4}))
	n, err := QuotaLanes(ctx, js)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	require.NoError(t, EnsureStreams(ctx, js, StreamOptions{}), "a process that asks for none takes the stream's")
	require.NoError(t, EnsureStreams(ctx, js, StreamOptions{QuotaLanes: 4}))
	n, err = QuotaLanes(ctx, js)
	require.NoError(t, err)
	assert.Equal(t, 4, n)
	err = EnsureStreams(ctx, js, StreamOptions{QuotaLanes: 2})
	require.ErrorIs(t, err, ErrQuotaLanesFixed)

	// A ledger stream from before lanes were counted has one.
	s, err := js.Stream(ctx, LedgerStream)
	require.NoError(t, err)
	cfg := s.CachedInfo().Config
	delete(cfg.Metadata, quotaLanesKey)
	_, err = js.UpdateStream(ctx, cfg)
	require.NoError(t, err)
	n, err = QuotaLanes(ctx, js)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	// And keeps it: a process asking for more is refused rather than storing its own number,
	// which another process starting at the same time could read differently.
	err = EnsureStreams(ctx, js, StreamOptions{QuotaLanes: 4})
	require.ErrorIs(t, err, ErrQuotaLanesFixed)
	require.NoError(t, EnsureStreams(ctx, js, StreamOptions{}))
	s, err = js.Stream(ctx, LedgerStream)
	require.NoError(t, err)
	assert.Equal(t, "1", s.CachedInfo().Config.Metadata[quotaLanesKey], "stored as one")
}
