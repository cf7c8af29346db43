// Package bustest gives tests a real embedded JetStream server with allot's streams, the
// set-up every package's integration tests share.
package bustest

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
)

// Start starts an embedded server in a temporary folder, shut down when the test ends.
func Start(t testing.TB) *bus.Embedded {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	return emb
}

// Connect opens a connection of its own to emb, closed when the test ends, with allot's
// streams in place.
func Connect(t testing.TB, emb *bus.Embedded) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(emb.Server))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := bus.EnsureStreams(context.Background(), js, bus.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return js
}

// JetStream is Connect to a server of its own.
func JetStream(t testing.TB) jetstream.JetStream {
	t.Helper()
	return Connect(t, Start(t))
}
