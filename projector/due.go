package projector

import (
	"container/heap"
	"time"
)

// The expiry index: when each account next has something the clock alone makes due — a
// block's expires_at, a hold's TTL, a postpaid subscription's cycle end — so the Expirer looks
// at those accounts only. Scanning every account each second held the read lock for 450-870
// ms at a million customers (BenchmarkExpirerScan), and a writer waiting for it makes every
// reader wait. Entries are hints: an account is looked at when one comes due and checked
// then; an entry made stale by a later change (a block used up, a hold committed) finds
// nothing to do.

type dueKind uint8

const (
	dueBlock dueKind = iota // a block's expires_at (written a grace period later)
	dueHold                 // a reservation's expiry
	dueCycle                // a postpaid subscription's cycle end
)

// dueAt is a time an Apply made due: the ledger moves it into its index (Account.noteDue).
type dueAt struct {
	at   time.Time
	kind dueKind
}

type dueItem struct {
	at   time.Time
	kind dueKind
	key  accountKey
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// dueIndex is two heaps: blocks (their time comes a grace period later) and the rest.
type dueIndex struct{ blocks, others dueHeap }

func (x *dueIndex) push(it dueItem) {
	if it.kind == dueBlock {
		heap.Push(&x.blocks, it)
	} else {
		heap.Push(&x.others, it)
	}
}

// noteDue records that at became due on the account (a no-op outside a ledger's Apply).
func (a *Account) noteDue(at time.Time, kind dueKind) {
	if a.due != nil {
		*a.due = append(*a.due, dueAt{at, kind})
	}
}

// collectDueLocked has the account note what the entry about to be applied makes due, when an
// Expirer reads the index (TrackDue): folds nobody takes from (an API-only node's, the sink's,
// the notifier's) would grow it without end.
func (l *Ledger) collectDueLocked(a *Account) {
	if l.trackDue {
		a.due = &l.dueScratch
	}
}

// indexDueLocked moves what the entry just applied to account k made due into the index.
func (l *Ledger) indexDueLocked(k accountKey, a *Account) {
	a.due = nil
	for _, d := range l.dueScratch {
		l.dueIdx.push(dueItem{d.at, d.kind, k})
	}
	l.dueScratch = l.dueScratch[:0]
}

// TrackDue makes the ledger keep its expiry index, built now from every account: the Expirer
// calls it before reading the index.
func (l *Ledger) TrackDue() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.trackDue {
		return
	}
	l.trackDue, l.dueIdx = true, dueIndex{}
	for k, a := range l.accounts {
		l.indexAccountLocked(k, a)
	}
}

// indexAccountLocked indexes everything due later on an account (a used-up block too: a
// credit-back may refill it before it expires).
func (l *Ledger) indexAccountLocked(k accountKey, a *Account) {
	if !l.trackDue {
		return
	}
	for _, b := range a.Blocks {
		if b.ExpiresAt != nil && !b.Expired {
			l.dueIdx.push(dueItem{*b.ExpiresAt, dueBlock, k})
		}
	}
	for _, r := range a.Reservations {
		if r.Status == StatusActive {
			l.dueIdx.push(dueItem{r.ExpiresAt, dueHold, k})
		}
	}
	for _, s := range a.Subscriptions {
		if s.Canceled == nil {
			l.dueIdx.push(dueItem{s.CycleEnd, dueCycle, k})
		}
	}
}

// takeDue removes from the index the accounts with something due at now — blocks a grace
// period after their expiry — and returns them once each.
func (l *Ledger) takeDue(now time.Time, grace time.Duration) []accountKey {
	l.mu.Lock()
	defer l.mu.Unlock()
	var keys []accountKey
	seen := map[accountKey]bool{}
	take := func(h *dueHeap, after time.Duration) {
		for h.Len() > 0 && !(*h)[0].at.Add(after).After(now) {
			it := heap.Pop(h).(dueItem)
			if !seen[it.key] {
				seen[it.key] = true
				keys = append(keys, it.key)
			}
		}
	}
	take(&l.dueIdx.blocks, grace)
	take(&l.dueIdx.others, 0)
	return keys
}

// remindDue puts an account back in the index at now: its expiry could not be written.
func (l *Ledger) remindDue(k accountKey, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.dueIdx.push(dueItem{now, dueHold, k})
}
