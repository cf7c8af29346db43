package projector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Follow keeps l current with the ledger stream until ctx ends, starting after what l already
// holds (a snapshot's sequence, or the beginning). A watchdog restarts the consumer when it
// stops delivering while the stream grows — what an ordered consumer can do for a while when
// the cluster node serving it goes away.
func Follow(ctx context.Context, js jetstream.JetStream, stream string, l *Ledger, log *slog.Logger) error {
	for ctx.Err() == nil {
		if err := followOnce(ctx, js, stream, l, log); err != nil && ctx.Err() == nil {
			log.Warn("ledger projection restarting its consumer", "err", err, "seq", l.Seq())
			select {
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
	return nil
}

func followOnce(ctx context.Context, js jetstream.JetStream, stream string, l *Ledger, log *slog.Logger) error {
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
	defer cc.Stop()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	lastSeq, stuck := l.Seq(), 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		seq := l.Seq()
		if seq != lastSeq {
			lastSeq, stuck = seq, 0
			continue
		}
		info, err := st.Info(ctx)
		if err != nil {
			continue // the cluster may be electing; try again next tick
		}
		if info.State.LastSeq > seq {
			if stuck++; stuck >= 2 {
				return fmt.Errorf("no progress at %d while the stream is at %d", seq, info.State.LastSeq)
			}
		} else {
			stuck = 0
		}
	}
}
