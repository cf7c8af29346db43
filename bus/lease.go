package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket holds leases: which process owns a rating partition, the sink, the webhook
// dispatcher. Keys expire LeaseTTL after their last renewal, so a dead owner's work moves on.
const LeaseBucket = "ALLOT_LEASES"

// LeaseTTL is how long a lease outlives its last renewal; owners renew every third of it.
const LeaseTTL = 6 * time.Second

// Leases grants exclusive ownership of named work to one process at a time.
type Leases struct {
	KV    jetstream.KeyValue
	Owner string // this process
}

// EnsureLeases creates or opens the lease bucket.
func EnsureLeases(ctx context.Context, js jetstream.JetStream, o StreamOptions, owner string) (*Leases, error) {
	o = o.withDefaults()
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket, Description: "allot work ownership",
		TTL: LeaseTTL, Storage: jetstream.MemoryStorage, Replicas: keptReplicas(ctx, js, "KV_"+LeaseBucket, o.Replicas)})
	if err != nil {
		return nil, fmt.Errorf("opening leases: %w", err)
	}
	return &Leases{KV: kv, Owner: owner}, nil
}

// Acquire takes name if nobody holds it; ok is false when someone does.
func (l *Leases) Acquire(ctx context.Context, name string) (rev uint64, ok bool, err error) {
	rev, err = l.KV.Create(ctx, name, []byte(l.Owner))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := l.KV.Get(ctx, name)
		if gerr == nil && string(e.Value()) == l.Owner {
			return e.Revision(), true, nil // ours already (a restart of the same owner id)
		}
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	return rev, true, nil
}

// Renew keeps name; it fails when the lease was lost (expired and taken by someone else).
func (l *Leases) Renew(ctx context.Context, name string, rev uint64) (uint64, error) {
	return l.KV.Update(ctx, name, []byte(l.Owner), rev)
}

// Release gives name up.
func (l *Leases) Release(ctx context.Context, name string, rev uint64) {
	l.KV.Delete(ctx, name, jetstream.LastRevision(rev))
}

// Holding runs fn while this process holds name, for as long as ctx lasts: it waits for the
// lease, runs fn with a context that ends when the lease is lost, and tries again. Work that
// only one process may do at a time (the ClickHouse sink, the webhook dispatcher) runs so.
func (l *Leases) Holding(ctx context.Context, name string, log *slog.Logger, fn func(context.Context) error) error {
	for ctx.Err() == nil {
		rev, ok, err := l.Acquire(ctx, name)
		if err != nil || !ok {
			select {
			case <-time.After(LeaseTTL / 3):
			case <-ctx.Done():
			}
			continue
		}
		log.Info("lease acquired", "lease", name)
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- fn(wctx) }()
		t := time.NewTicker(LeaseTTL / 3)
	hold:
		for {
			select {
			case err := <-done:
				t.Stop()
				cancel()
				l.Release(context.WithoutCancel(ctx), name, rev)
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					log.Warn("leased work stopped", "lease", name, "err", err)
				}
				break hold
			case <-t.C:
				if rev, err = l.Renew(ctx, name, rev); err != nil {
					log.Warn("lease lost", "lease", name, "err", err)
					t.Stop()
					cancel()
					<-done
					break hold
				}
			}
		}
	}
	return nil
}
