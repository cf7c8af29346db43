package projector

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow keeps l current with the ledger stream until ctx ends, starting after what l already
// holds (a snapshot's sequence, or the beginning).
func Follow(ctx context.Context, js jetstream.JetStream, stream string, l *Ledger, log *slog.Logger) error {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if seq := l.Seq(); seq > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, seq+1
	}
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("following %s: %w", stream, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		if err := l.ApplyMsg(md.Sequence.Stream, m.Subject(), m.Headers(), m.Data()); err != nil {
			log.Error("skipping unreadable ledger entry", "seq", md.Sequence.Stream, "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("following %s: %w", stream, err)
	}
	<-ctx.Done()
	cc.Stop()
	return nil
}
