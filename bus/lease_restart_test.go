package bus

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"
)

// A standalone NATS server that restarts forgets the lease bucket (it is kept in memory,
// configuration and all): the leases open it again, and work can be leased as before. Nothing
// recreated it, so no rating partition, sink or webhook work was ever leased again.
func TestLeasesSurviveServerRestart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	start := func() *server.Server {
		s, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, Port: port, Host: "127.0.0.1", NoLog: true, NoSigs: true})
		require.NoError(t, err)
		go s.Start()
		require.True(t, s.ReadyForConnections(5*time.Second))
		return s
	}
	s := start()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()
	l, err := EnsureLeases(ctx, js, StreamOptions{}, "me")
	require.NoError(t, err)
	_, ok, err := l.Acquire(ctx, "rating.p0")
	require.NoError(t, err)
	require.True(t, ok)
	s.Shutdown()
	s.WaitForShutdown()
	s = start()
	defer s.Shutdown()
	require.Eventually(t, func() bool {
		_, ok, err := l.Acquire(ctx, "rating.p1")
		return err == nil && ok
	}, 10*time.Second, 100*time.Millisecond, "the lease bucket is usable again")
}
