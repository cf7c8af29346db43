package projector

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
)

// rebuildStall is how long Rebuild waits for the next message before giving up: the stream
// said it holds target, so a longer silence means those messages are gone or unreachable.
var rebuildStall = 30 * time.Second

// Rebuild folds the ledger stream into l from the entry after l's sequence (the first, for a
// new projection) through target (the stream's last sequence when it was asked), as `allot
// replay` does, and returns how many entries it folded. progress, when not nil, is called now
// and then with the sequence reached. Receiving and folding run on two goroutines
// (bus.FoldOrdered); entries are still folded one at a time, in stream order.
func Rebuild(ctx context.Context, js jetstream.JetStream, stream string, l *Ledger, target uint64, progress func(seq uint64)) (int, error) {
	from := l.Seq()
	if target <= from {
		return 0, nil
	}
	n := 0
	err := bus.FoldOrdered(ctx, js, stream, from+1, target, rebuildStall, func(seq uint64, _ time.Time, m jetstream.Msg) {
		// An unreadable entry is skipped by every fold alike (the live projection logs it),
		// so the rebuilt state still compares.
		_ = l.ApplyMsg(seq, m.Subject(), m.Headers(), m.Data())
		n++
	}, progress)
	return n, err
}
