package rating

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Leaser is what the pool needs of leases (bus.Leases).
type Leaser interface {
	Acquire(ctx context.Context, name string) (uint64, bool, error)
	Renew(ctx context.Context, name string, rev uint64) (uint64, error)
	Release(ctx context.Context, name string, rev uint64)
}

// Pool shares the usage partitions among every process running rating: each takes about
// partitions / members of them, by lease, and a partition whose owner died is taken over (its
// worker resumes from the partition's snapshot). A customer's events stay in one partition, so
// they are rated in order whoever rates them.
type Pool struct {
	Partitions int
	Leases     Leaser
	KV         jetstream.KeyValue // the lease bucket, for membership (when Leases has none of its own)
	Member     string
	NewWorker  func(partition int) *Worker
	Log        *slog.Logger

	mu    sync.Mutex
	owned map[int]*owned
}

// ErrLeaseLost is why a worker is stopped when its partition's lease could not be renewed:
// another process may be rating the partition already.
var ErrLeaseLost = errors.New("the partition's lease was lost")

type owned struct {
	mu     sync.Mutex // one renewal at a time (the pool's, the worker's Confirm): each expects the revision the last left
	rev    uint64
	cancel context.CancelCauseFunc
	done   chan struct{}
	worker *Worker
}

const memberPrefix = "rating.member."

func partitionLease(p int) string { return "rating.p" + strconv.Itoa(p) }

// Workers returns the workers this process runs now.
func (p *Pool) Workers() []*Worker {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []*Worker
	for _, o := range p.owned {
		out = append(out, o.worker)
	}
	return out
}

// Run rebalances until ctx ends, then releases every partition.
func (p *Pool) Run(ctx context.Context) error {
	p.mu.Lock()
	p.owned = map[int]*owned{}
	p.mu.Unlock()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var memberRev uint64
	for {
		// Heartbeat: membership is how others compute their fair share.
		if memberRev == 0 {
			memberRev, _ = p.kv().Put(ctx, memberPrefix+p.Member, []byte(p.Member))
		} else if rev, err := p.kv().Put(ctx, memberPrefix+p.Member, []byte(p.Member)); err == nil {
			memberRev = rev
		}
		p.rebalance(ctx)
		select {
		case <-ctx.Done():
			p.releaseAll()
			p.kv().Delete(context.WithoutCancel(ctx), memberPrefix+p.Member)
			return nil
		case <-tick.C:
		}
	}
}

// kv is the lease bucket as the leases have it now (they open it again when NATS lost it).
func (p *Pool) kv() jetstream.KeyValue {
	if b, ok := p.Leases.(interface{ Bucket() jetstream.KeyValue }); ok {
		return b.Bucket()
	}
	return p.KV
}

func (p *Pool) members(ctx context.Context) int {
	lister, err := p.kv().ListKeys(ctx)
	if err != nil {
		return 1
	}
	n := 0
	for k := range lister.Keys() {
		if strings.HasPrefix(k, memberPrefix) {
			n++
		}
	}
	return max(n, 1)
}

func (p *Pool) rebalance(ctx context.Context) {
	share := (p.Partitions + p.members(ctx) - 1) / p.members(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	// Keep what we hold (renewing), give up what we lost.
	for part, o := range p.owned {
		if err := p.renew(ctx, part, o); err != nil {
			p.Log.Warn("rating partition lease lost", "partition", part, "err", err)
			o.cancel(ErrLeaseLost)
			<-o.done
			delete(p.owned, part)
		}
	}
	// Over the fair share (a member joined): release the highest partitions.
	for len(p.owned) > share {
		hi := -1
		for part := range p.owned {
			hi = max(hi, part)
		}
		o := p.owned[hi]
		o.cancel(nil)
		<-o.done
		o.mu.Lock()
		p.Leases.Release(ctx, partitionLease(hi), o.rev)
		o.mu.Unlock()
		delete(p.owned, hi)
		p.Log.Info("rating partition handed over", "partition", hi)
	}
	// Under it: take free partitions, starting after the member's own offset so processes
	// spread over different ones.
	for i := 0; i < p.Partitions && len(p.owned) < share; i++ {
		part := i
		if _, ok := p.owned[part]; ok {
			continue
		}
		rev, ok, err := p.Leases.Acquire(ctx, partitionLease(part))
		if err != nil || !ok {
			continue
		}
		w := p.NewWorker(part)
		wctx, cancel := context.WithCancelCause(ctx)
		o := &owned{rev: rev, cancel: cancel, done: make(chan struct{}), worker: w}
		w.Confirm = func(ctx context.Context) error { return p.renew(ctx, part, o) }
		go func() {
			defer close(o.done)
			w.Run(wctx)
		}()
		p.owned[part] = o
		p.Log.Info("rating partition taken", "partition", part)
	}
}

// renew renews the lease of the partition o owns.
func (p *Pool) renew(ctx context.Context, part int, o *owned) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	rev, err := p.Leases.Renew(ctx, partitionLease(part), o.rev)
	if err != nil {
		return err
	}
	o.rev = rev
	return nil
}

func (p *Pool) releaseAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for part, o := range p.owned {
		o.cancel(nil)
		<-o.done
		o.mu.Lock()
		p.Leases.Release(context.Background(), partitionLease(part), o.rev)
		o.mu.Unlock()
		delete(p.owned, part)
	}
}
