package projector

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/allot-dev/allot/events"
)

// Account is one customer's folded ledger.
type Account struct {
	Debited      events.Credits `json:"debited"`       // usage debits
	CreditedBack events.Credits `json:"credited_back"` // credit-backs (volume pricing), as a positive amount
	Unrated      int64          `json:"unrated_events"`
	Entries      int64          `json:"entries"`
	LastSeq      uint64         `json:"last_seq"` // ledger sequence of the customer's last entry

	usageSeq   uint64 // position of the last applied debit: (usage sequence, rule index)
	usageIndex int
	unratedSeq uint64
}

// Balance is what the customer has left: nothing was granted yet, so it is the negative of
// net usage (overage is a negative balance, never a dropped debit).
func (a Account) Balance() events.Credits { return a.CreditedBack - a.Debited }

type accountKey struct {
	Scope    events.Scope
	Customer string
}

// Ledger is the fold of the ledger stream.
type Ledger struct {
	mu       sync.RWMutex
	seq      uint64
	items    int64 // rating items (debits and unrated events) applied
	accounts map[accountKey]*Account
}

// Items is how many rating items (debits, credit-backs, unrated events) have been applied.
func (l *Ledger) Items() int64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.items
}

// NewLedger returns an empty fold.
func NewLedger() *Ledger { return &Ledger{accounts: map[accountKey]*Account{}} }

// Seq is the last ledger sequence applied.
func (l *Ledger) Seq() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.seq
}

// Apply folds the ledger entry at seq, published on subject with type typ.
func (l *Ledger) Apply(seq uint64, subject, typ string, data []byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if seq <= l.seq {
		return nil
	}
	l.seq = seq
	addr, err := events.ParseLedgerSubject(subject)
	if err != nil {
		return err
	}
	k := accountKey{events.Scope{Product: addr.Product, Env: addr.Env}, addr.Customer}
	a := l.accounts[k]
	if a == nil {
		a = &Account{}
		l.accounts[k] = a
	}
	a.LastSeq = seq
	a.Entries++
	switch typ {
	case events.TypeUsageRated:
		var r events.UsageRated
		if err := json.Unmarshal(data, &r); err != nil {
			return fmt.Errorf("ledger %d: %w", seq, err)
		}
		for _, d := range r.Debits {
			if a.applyDebit(d) {
				l.items++
			}
		}
		for _, u := range r.Unrated {
			if a.applyUnrated(u) {
				l.items++
			}
		}
	}
	return nil
}

// debitApplied reports whether a debit at this usage position was applied already.
func (a *Account) debitApplied(d events.UsageDebited) bool {
	return a.usageSeq != 0 && (d.UsageSeq < a.usageSeq || d.UsageSeq == a.usageSeq && d.RuleIndex <= a.usageIndex)
}

func (a *Account) applyDebit(d events.UsageDebited) bool {
	if a.debitApplied(d) {
		return false // a copy written by a re-rate after a crash
	}
	a.usageSeq, a.usageIndex = d.UsageSeq, d.RuleIndex
	if d.Amount >= 0 {
		a.Debited += d.Amount
	} else {
		a.CreditedBack -= d.Amount
	}
	return true
}

func (a *Account) applyUnrated(u events.UsageUnrated) bool {
	if u.UsageSeq <= a.unratedSeq {
		return false
	}
	a.unratedSeq = u.UsageSeq
	a.Unrated++
	return true
}

// Account returns a copy of one customer's account.
func (l *Ledger) Account(scope events.Scope, customer string) (Account, bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	a, ok := l.accounts[accountKey{scope, customer}]
	if !ok {
		return Account{}, false
	}
	return *a, true
}
