package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// Follower keeps a Catalog current with the config stream.
type Follower struct {
	js     jetstream.JetStream
	stream string
	cat    *Catalog
	log    *slog.Logger
}

// NewFollower returns a follower of the config stream named stream.
func NewFollower(js jetstream.JetStream, stream string, cat *Catalog, log *slog.Logger) *Follower {
	return &Follower{js: js, stream: stream, cat: cat, log: log}
}

// Run applies every config event, from the first, until ctx ends. An ordered consumer is
// enough: the fold is cheap and in memory, and the consumer recreates itself on gaps.
func (f *Follower) Run(ctx context.Context) error {
	cons, err := f.js.OrderedConsumer(ctx, f.stream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("following %s: %w", f.stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			f.log.Error("config message without metadata", "err", err)
			return
		}
		if err := f.cat.Apply(md.Sequence.Stream, m.Headers().Get(events.HeaderType), m.Data()); err != nil {
			f.log.Error("skipping unreadable config event", "seq", md.Sequence.Stream, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("following %s: %w", f.stream, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}

// Sync waits until the catalog holds everything the config stream held when Sync was called.
func (f *Follower) Sync(ctx context.Context) error {
	s, err := f.js.Stream(ctx, f.stream)
	if err != nil {
		return fmt.Errorf("syncing config: %w", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return fmt.Errorf("syncing config: %w", err)
	}
	return f.cat.WaitFor(ctx, info.State.LastSeq)
}

// Publish appends one config event and waits until this process's catalog has applied it,
// so a caller reads its own write.
func Publish(ctx context.Context, js jetstream.JetStream, cat *Catalog, subject, typ string, v any) (uint64, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("encoding %s: %w", typ, err)
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{events.HeaderType: []string{typ}}}
	ack, err := js.PublishMsg(ctx, msg)
	if err != nil {
		return 0, fmt.Errorf("publishing %s to %s: %w", typ, subject, err)
	}
	if err := cat.WaitFor(ctx, ack.Sequence); err != nil {
		return ack.Sequence, err
	}
	return ack.Sequence, nil
}
