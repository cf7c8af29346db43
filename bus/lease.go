package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket holds leases: which process owns a rating partition, the sink, the webhook
// dispatcher. Keys expire LeaseTTL after their last renewal, so a dead owner's work moves on.
const LeaseBucket = "ALLOT_LEASES"

// LeaseTTL is how long a lease outlives its last renewal; owners renew every third of it.
const LeaseTTL = 6 * time.Second

// Leases grants exclusive ownership of named work to one process at a time.
type Leases struct {
	Owner string // this process

	js   jetstream.JetStream
	opts StreamOptions
	mu   sync.Mutex
	kv   jetstream.KeyValue
}

// EnsureLeases creates or opens the lease bucket.
func EnsureLeases(ctx context.Context, js jetstream.JetStream, o StreamOptions, owner string) (*Leases, error) {
	l := &Leases{Owner: owner, js: js, opts: o.withDefaults()}
	kv, err := l.open(ctx)
	if err != nil {
		return nil, err
	}
	l.kv = kv
	return l, nil
}

func (l *Leases) open(ctx context.Context) (jetstream.KeyValue, error) {
	kv, err := l.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: LeaseBucket, Description: "allot work ownership",
		TTL: LeaseTTL, Storage: jetstream.MemoryStorage, Replicas: keptReplicas(ctx, l.js, "KV_"+LeaseBucket, l.opts.Replicas)})
	if err != nil {
		return nil, fmt.Errorf("opening leases: %w", err)
	}
	return kv, nil
}

// Bucket is the lease bucket as it stands (membership keys live there too).
func (l *Leases) Bucket() jetstream.KeyValue {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kv
}

// Heal opens the bucket again when err says it is gone: it is kept in memory, and a NATS
// server that restarts (a standalone one, R1) forgets it, configuration and all — every
// lease, and so every rating partition, the sink and the webhooks, stopped for good.
func (l *Leases) Heal(ctx context.Context, err error) {
	if err == nil || !(errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)) {
		return
	}
	if kv, oerr := l.open(ctx); oerr == nil {
		l.mu.Lock()
		l.kv = kv
		l.mu.Unlock()
	}
}

// Acquire takes name if nobody holds it; ok is false when someone does.
func (l *Leases) Acquire(ctx context.Context, name string) (rev uint64, ok bool, err error) {
	defer func() { l.Heal(ctx, err) }()
	kv := l.Bucket()
	rev, err = kv.Create(ctx, name, []byte(l.Owner))
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := kv.Get(ctx, name)
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
	r, err := l.Bucket().Update(ctx, name, []byte(l.Owner), rev)
	l.Heal(ctx, err)
	return r, err
}

// Release gives name up.
func (l *Leases) Release(ctx context.Context, name string, rev uint64) {
	l.Bucket().Delete(ctx, name, jetstream.LastRevision(rev))
}

// Holding runs fn while this process holds name, for as long as ctx lasts: it waits for the
// lease, runs fn with a context that ends when the lease is lost, and tries again. Work that
// only one process may do at a time (the webhook dispatcher) runs so.
func (l *Leases) Holding(ctx context.Context, name string, log *slog.Logger, fn func(context.Context) error) error {
	return l.HoldingConfirmed(ctx, name, log, func(ctx context.Context, _ *Hold) error { return fn(ctx) })
}

// Hold is a lease that HoldingConfirmed holds for its work.
type Hold struct {
	l    *Leases
	name string
	mu   sync.Mutex // one renewal at a time: each expects the revision the last one left
	rev  uint64
	lost error
}

// Confirm renews the lease now. nil means it is this process's and stays so for LeaseTTL from
// the call (no other process can take it before the key expires); an error means it was lost,
// and the work must stop before doing anything only the holder may do.
//
// The context Holding gives its work ends when a renewal fails, but only at the next renewal,
// up to LeaseTTL/3 later — and a process that was stopped (a long pause, a frozen VM) longer
// than LeaseTTL wakes with its context still live while another process holds the lease. Work
// whose effects two holders must never both make (the sink's inserts) confirms right before
// each one: the other process cannot hold the lease until LeaseTTL after the confirmation.
func (h *Hold) Confirm(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.lost != nil {
		return h.lost
	}
	rev, err := h.l.Renew(ctx, h.name, h.rev)
	if err != nil {
		if ctx.Err() == nil {
			h.lost = fmt.Errorf("lease %s lost: %w", h.name, err)
			return h.lost
		}
		return err
	}
	h.rev = rev
	return nil
}

func (h *Hold) revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.rev
}

// HoldingConfirmed is Holding for work that confirms the lease (Hold.Confirm) before each
// step only the holder may take.
func (l *Leases) HoldingConfirmed(ctx context.Context, name string, log *slog.Logger, fn func(context.Context, *Hold) error) error {
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
		h := &Hold{l: l, name: name, rev: rev}
		wctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- fn(wctx, h) }()
		t := time.NewTicker(LeaseTTL / 3)
	hold:
		for {
			select {
			case err := <-done:
				t.Stop()
				cancel()
				l.Release(context.WithoutCancel(ctx), name, h.revision())
				if ctx.Err() != nil {
					return nil
				}
				if err != nil {
					log.Warn("leased work stopped", "lease", name, "err", err)
				}
				break hold
			case <-t.C:
				if err := h.Confirm(ctx); err != nil {
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
