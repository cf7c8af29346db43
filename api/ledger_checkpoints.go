package api

import (
	"container/list"
	"sync"

	"github.com/allot-dev/allot/events"
)

// ledgerCheckpoints keeps, for customers whose ledger was paged recently, the fold of their
// entries before the entry a page ended in (a snapshot of a one-customer projection), so the
// next page folds on from there. Without them every page folded the customer's history from
// its first entry, and paging through a customer with n entries read O(n²/limit) of them.
// Bounded by count and by bytes; least recently used go first.
type ledgerCheckpoints struct {
	mu                 sync.Mutex
	maxCount, maxBytes int
	bytes              int
	order              *list.List // of *ledgerCheckpoint, most recently used first
	byKey              map[checkpointKey]*list.Element
}

// checkpointKey names the state of a customer's fold just before entry Before.
type checkpointKey struct {
	Scope    events.Scope
	Customer string
	Before   uint64
}

type ledgerCheckpoint struct {
	key   checkpointKey
	state []byte // projector.Ledger's snapshot encoding
}

func newLedgerCheckpoints(maxCount, maxBytes int) *ledgerCheckpoints {
	return &ledgerCheckpoints{maxCount: maxCount, maxBytes: maxBytes, order: list.New(), byKey: map[checkpointKey]*list.Element{}}
}

func (c *ledgerCheckpoints) get(k checkpointKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byKey[k]
	if !ok {
		return nil, false
	}
	c.order.MoveToFront(e)
	return e.Value.(*ledgerCheckpoint).state, true
}

func (c *ledgerCheckpoints) put(k checkpointKey, state []byte) {
	if len(state) > c.maxBytes/4 {
		return // one customer's state must not push out every other
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byKey[k]; ok {
		cp := e.Value.(*ledgerCheckpoint)
		c.bytes += len(state) - len(cp.state)
		cp.state = state
		c.order.MoveToFront(e)
	} else {
		c.byKey[k] = c.order.PushFront(&ledgerCheckpoint{key: k, state: state})
		c.bytes += len(state)
	}
	for c.order.Len() > c.maxCount || c.bytes > c.maxBytes {
		e := c.order.Back()
		cp := e.Value.(*ledgerCheckpoint)
		c.order.Remove(e)
		delete(c.byKey, cp.key)
		c.bytes -= len(cp.state)
	}
}
