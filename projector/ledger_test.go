package projector

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

func TestLedgerFoldSkipsReplayedDebits(t *testing.T) {
	l := NewLedger()
	subj := events.LedgerSubject("acme", "live", "user@example.com")
	debit := func(usageSeq uint64, idx int, amt events.Credits) []byte {
		b, err := json.Marshal(events.UsageRated{Customer: "user@example.com", FirstSeq: usageSeq, LastSeq: usageSeq,
			Debits: []events.UsageDebited{{ID: "d", Customer: "user@example.com", UsageSeq: usageSeq, RuleIndex: idx, Amount: amt}}})
		require.NoError(t, err)
		return b
	}
	seq := uint64(0)
	apply := func(typ string, b []byte) {
		seq++
		require.NoError(t, l.Apply(seq, subj, typ, b))
	}
	apply(events.TypeUsageRated, debit(10, 0, 5*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(10, 1, 1*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(12, 0, 2*events.MicroPerCredit))
	// A re-rate after a crash writes (10,1) and (12,0) again, past the dedup window.
	apply(events.TypeUsageRated, debit(10, 1, 1*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(12, 0, 2*events.MicroPerCredit))
	apply(events.TypeUsageRated, debit(13, 0, -3*events.MicroPerCredit))
	u, _ := json.Marshal(events.UsageRated{FirstSeq: 14, LastSeq: 14, Unrated: []events.UsageUnrated{{UsageSeq: 14}}})
	apply(events.TypeUsageRated, u)
	apply(events.TypeUsageRated, u)
	// Redelivery of an old ledger sequence changes nothing.
	require.NoError(t, l.Apply(2, subj, events.TypeUsageRated, debit(99, 0, 100)))

	a, ok := l.Account(events.Scope{Product: "acme", Env: "live"}, "user@example.com")
	require.True(t, ok)
	assert.Equal(t, events.Credits(8*events.MicroPerCredit), a.Debited)
	assert.Equal(t, events.Credits(3*events.MicroPerCredit), a.CreditedBack)
	assert.Equal(t, events.Credits(-5*events.MicroPerCredit), a.Balance(time.Now()))
	assert.Equal(t, int64(1), a.Unrated)
	assert.Equal(t, uint64(8), l.Seq())
	assert.Equal(t, int64(5), l.Items(), "four debits and one unrated event, each once")

	// One batch overlapping what was applied (a re-rate that split events differently).
	b, _ := json.Marshal(events.UsageRated{FirstSeq: 13, LastSeq: 20, Debits: []events.UsageDebited{
		{UsageSeq: 13, Amount: -3 * events.MicroPerCredit}, {UsageSeq: 20, Amount: 7 * events.MicroPerCredit}, {UsageSeq: 20, RuleIndex: 1, Amount: 1}}})
	require.NoError(t, l.Apply(10, subj, events.TypeUsageRated, b))
	a, _ = l.Account(events.Scope{Product: "acme", Env: "live"}, "user@example.com")
	assert.Equal(t, events.Credits(15*events.MicroPerCredit+1), a.Debited)
	_, ok = l.Account(events.Scope{Product: "acme", Env: "test"}, "user@example.com")
	assert.False(t, ok, "scopes never mix")
	require.Error(t, l.Apply(11, "allot.usage.a.b.c", events.TypeUsageRated, nil))
}

// A rule added between a rating and its re-rate after a crash shifts the debits' positions in
// the entry; each rule is still charged once per event. By position, "price" (index 0, then
// index 1 behind the new "a-price") was charged twice.
func TestReRateWithANewRuleChargesEachRuleOnce(t *testing.T) {
	for _, fast := range []bool{true, false} {
		l := NewLedger()
		scope := events.Scope{Product: "acme", Env: "live"}
		subj := events.LedgerSubject("acme", "live", "c1")
		seq := uint64(0)
		write := func(debits ...events.UsageDebited) {
			t.Helper()
			for i := range debits {
				debits[i].Customer, debits[i].RuleIndex = "c1", i
			}
			b, err := json.Marshal(events.UsageRated{Customer: "c1", Debits: debits})
			require.NoError(t, err)
			if !fast { // the same entry, in a shape the hand decoder leaves to encoding/json
				b = append([]byte(" "), b...)
			}
			seq++
			require.NoError(t, l.Apply(seq, subj, events.TypeUsageRated, b))
		}
		write(events.UsageDebited{UsageSeq: 10, Rule: "price", Amount: 5 * events.MicroPerCredit})
		// Crash before the rating snapshot; "a-price" is added; event 10 is rated again.
		write(events.UsageDebited{UsageSeq: 10, Rule: "a-price", Amount: 2 * events.MicroPerCredit},
			events.UsageDebited{UsageSeq: 10, Rule: "price", Amount: 5 * events.MicroPerCredit})
		write(events.UsageDebited{UsageSeq: 11, Rule: "a-price", Amount: 2 * events.MicroPerCredit},
			events.UsageDebited{UsageSeq: 11, Rule: "price", Amount: 5 * events.MicroPerCredit})
		// And the same after a restart from a snapshot taken in the middle of event 11.
		a, ok := l.Account(scope, "c1")
		require.True(t, ok)
		assert.Equal(t, events.Credits(14*events.MicroPerCredit), a.Debited, "fast decode %v", fast)
		snap := a.clone()
		// Through the projection's snapshot, as a restart reads it.
		b, err := json.Marshal(l)
		require.NoError(t, err)
		l = NewLedger()
		require.NoError(t, json.Unmarshal(b, l))
		write(events.UsageDebited{UsageSeq: 11, Rule: "price", Amount: 5 * events.MicroPerCredit})
		a, _ = l.Account(scope, "c1")
		assert.Equal(t, events.Credits(14*events.MicroPerCredit), a.Debited, "fast decode %v", fast)
		assert.Equal(t, []uint64{uint64(hashRuleKey([]byte("a-price"))), uint64(hashRuleKey([]byte("price")))}, snap.UsageRules)
	}
}

// An entry this process wrote is folded from its acknowledgement; the stream's copy, met later
// by the fold, is skipped; and the result is the fold's, byte for byte.
func TestApplyOwnAheadOfTheFold(t *testing.T) {
	scope := events.Scope{Product: "acme", Env: "live"}
	subj := func(c string) string { return events.LedgerSubject("acme", "live", c) }
	grant := func(c, block string, amt events.Credits) []byte {
		b, err := json.Marshal(events.CreditsGranted{Block: block, Customer: c, Amount: amt, Source: "topup", Priority: 40,
			EffectiveAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), At: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)})
		require.NoError(t, err)
		return b
	}
	type entry struct {
		seq      uint64
		customer string
		data     []byte
	}
	stream := []entry{
		{1, "a", grant("a", "blk_1", 10)},
		{2, "b", grant("b", "blk_2", 20)},
		{3, "a", grant("a", "blk_3", 30)},
		{4, "a", grant("a", "blk_4", 40)},
	}
	// The digest of the plain fold after each sequence.
	reference, want := NewLedger(), map[uint64]string{}
	for _, e := range stream {
		_, err := reference.ApplyCommand(e.seq, subj(e.customer), events.TypeCreditsGranted, "cmd-"+string(rune('0'+e.seq)), e.data)
		require.NoError(t, err)
		_, want[e.seq], err = reference.Digest()
		require.NoError(t, err)
	}

	l := NewLedger()
	_, err := l.ApplyCommand(1, subj("a"), events.TypeCreditsGranted, "cmd-1", stream[0].data)
	require.NoError(t, err)
	ok, err := l.ApplyOwn(3, 2, scope, "a", events.TypeCreditsGranted, "cmd-3", stream[2].data)
	require.NoError(t, err)
	assert.False(t, ok, "a's previous entry is 1, not 2: this cannot be what the fold meets next")
	ok, err = l.ApplyOwn(3, 1, scope, "a", events.TypeCreditsGranted, "cmd-3", stream[2].data)
	require.NoError(t, err)
	require.True(t, ok)
	a, _ := l.Account(scope, "a")
	assert.Equal(t, events.Credits(40), a.Balance(time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)), "visible before the fold gets there")
	assert.True(t, a.HasCommand("cmd-3"))
	assert.Equal(t, uint64(1), l.Seq(), "the fold's position does not move")
	ok, err = l.ApplyOwn(3, 1, scope, "a", events.TypeCreditsGranted, "cmd-3", stream[2].data)
	require.NoError(t, err)
	assert.True(t, ok, "already in the projection")

	// Digest waits for the fold to catch up with what was applied ahead of it.
	done := make(chan struct{})
	var seq uint64
	var digest string
	go func() {
		defer close(done)
		seq, digest, err = l.Digest()
	}()
	select {
	case <-done:
		t.Fatal("Digest answered while an entry was applied ahead of the fold")
	case <-time.After(50 * time.Millisecond):
	}
	ok, err2 := l.ApplyOwn(4, 3, scope, "a", events.TypeCreditsGranted, "cmd-4", stream[3].data)
	require.NoError(t, err2)
	assert.False(t, ok, "declined while a reader waits for a settled state")
	for _, e := range stream[1:] {
		_, err := l.ApplyCommand(e.seq, subj(e.customer), events.TypeCreditsGranted, "cmd-"+string(rune('0'+e.seq)), e.data)
		require.NoError(t, err)
	}
	<-done
	require.NoError(t, err)
	assert.GreaterOrEqual(t, seq, uint64(3), "the digest covers what was applied ahead")
	assert.Equal(t, want[seq], digest, "the state of exactly that sequence")
	_, d, err := l.Digest()
	require.NoError(t, err)
	assert.Equal(t, want[4], d, "the stream's copy of entry 3 is skipped, not counted again")
}

// A customer that reserves all day keeps a bounded account: active holds stay, the most
// recently ended are remembered whole (GET), older ones are forgotten but leave a record (a
// late commit or release is still told it expired or ended: 409, not 404), and the oldest
// records go too — by every fold alike, in the reservation index too.
func TestEndedReservationsAreForgotten(t *testing.T) {
	scope := events.Scope{Product: "acme", Env: "live"}
	subj := events.LedgerSubject("acme", "live", "busy")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewLedger()
	f := &feed{t: t, subj: subj}
	apply := func(typ string, v any) { f.apply(typ, v, l) }
	apply(events.TypeReservationCreated, events.ReservationCreated{Reservation: "res_long", Customer: "busy", Amount: 1, ExpiresAt: t0.Add(24 * time.Hour), At: t0})
	const n = maxForgotten + 1000
	for i := 0; i < n; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		id := fmt.Sprint("res_", i)
		apply(events.TypeReservationCreated, events.ReservationCreated{Reservation: id, Customer: "busy", Amount: 1, ExpiresAt: at.Add(time.Minute), At: at})
		typ := events.TypeReservationReleased
		if i%7 == 3 {
			typ = events.TypeReservationExpired
		}
		apply(typ, events.ReservationReleased{Reservation: id, Customer: "busy", At: at.Add(time.Second / 2)})
	}
	a, ok := l.Account(scope, "busy")
	require.True(t, ok)
	assert.LessOrEqual(t, len(a.Reservations), maxReservations+1)
	assert.Equal(t, StatusActive, a.Reservations["res_long"].Status, "an active hold is never forgotten")
	last := fmt.Sprint("res_", n-1)
	require.NotNil(t, a.Reservations[last], "the most recently ended are kept")
	assert.Equal(t, StatusReleased, a.Reservations[last].Status)
	assert.Nil(t, a.Reservations["res_0"], "the oldest ended are forgotten")
	assert.Len(t, a.Forgotten, maxForgotten)
	_, ok = l.ReservationCustomer(scope, "res_0")
	assert.False(t, ok, "the oldest records go, and leave the index")
	_, err := a.DecideRelease("res_0", t0.Add(time.Hour))
	assert.ErrorIs(t, err, ErrReservationNotFound)
	for id, want := range map[string]error{"res_7003": ErrReservationExpired, "res_7001": ErrReservationEnded} {
		require.Nil(t, a.Reservations[id])
		c, ok := l.ReservationCustomer(scope, id)
		assert.True(t, ok, id)
		assert.Equal(t, "busy", c)
		_, err := a.DecideCommit(id, nil, t0.Add(time.Hour))
		assert.ErrorIs(t, err, want, id)
		_, err = a.DecideRelease(id, t0.Add(time.Hour))
		assert.ErrorIs(t, err, want, id)
	}
	c, ok := l.ReservationCustomer(scope, last)
	assert.True(t, ok)
	assert.Equal(t, "busy", c)
	assert.Equal(t, events.Credits(1), a.Reserved(t0.Add(time.Hour)))

	// A projection restored from its snapshot agrees, index included.
	b, err := json.Marshal(l)
	require.NoError(t, err)
	r := NewLedger()
	require.NoError(t, json.Unmarshal(b, r))
	_, d1, _ := l.Digest()
	_, d2, _ := r.Digest()
	assert.Equal(t, d1, d2)
	_, ok = r.ReservationCustomer(scope, "res_0")
	assert.False(t, ok)
	_, ok = r.ReservationCustomer(scope, "res_7001")
	assert.True(t, ok)
	_, ok = r.ReservationCustomer(scope, last)
	assert.True(t, ok)

	// And goes on forgetting exactly as the projection that never stopped (it would not if it
	// had lost count of the ended ones).
	both := func(typ string, v any) { f.apply(typ, v, l, r) }
	for i := n; i < n+300; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		id := fmt.Sprint("res_", i)
		both(events.TypeReservationCreated, events.ReservationCreated{Reservation: id, Customer: "busy", Amount: 1, ExpiresAt: at.Add(time.Minute), At: at})
		both(events.TypeReservationReleased, events.ReservationReleased{Reservation: id, Customer: "busy", At: at.Add(time.Second / 2)})
	}
	_, d1, _ = l.Digest()
	_, d2, _ = r.Digest()
	assert.Equal(t, d1, d2)
	a, _ = r.Account(scope, "busy")
	assert.Nil(t, a.Reservations[fmt.Sprint("res_", n-200)], "the restored projection forgets too")
}

// The projection's fold (no per-item results, scratch decode) and the sink's (results kept)
// leave the same state.
func TestFoldWithAndWithoutResultsAgree(t *testing.T) {
	subj := events.LedgerSubject("acme", "live", "c")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	withResults, without := NewLedger(), NewLedger()
	seq := uint64(0)
	apply := func(typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		seq++
		_, err = withResults.ApplyItems(seq, subj, typ, b)
		require.NoError(t, err)
		require.NoError(t, without.Apply(seq, subj, typ, b))
	}
	apply(events.TypeCreditsGranted, events.CreditsGranted{Block: "blk_1", Customer: "c", Amount: 50, Source: "promo", Priority: 10, EffectiveAt: t0, At: t0})
	for i := 1; i <= 40; i++ {
		amt := events.Credits(3)
		if i%7 == 0 {
			amt = -2 // a credit-back
		}
		ds := []events.UsageDebited{{Customer: "c", UsageSeq: uint64(i), Amount: amt, EventTime: t0.Add(time.Duration(i) * time.Minute)},
			{Customer: "c", UsageSeq: uint64(i), RuleIndex: 1, Amount: 1, EventTime: t0.Add(time.Duration(i) * time.Minute)}}
		if i%5 == 0 {
			ds = ds[:1] // and a re-rate that repeats an item already applied
			ds = append(ds, events.UsageDebited{Customer: "c", UsageSeq: uint64(i - 1), RuleIndex: 1, Amount: 1, EventTime: t0})
		}
		apply(events.TypeUsageRated, events.UsageRated{Customer: "c", FirstSeq: uint64(i), LastSeq: uint64(i), Debits: ds,
			Unrated: []events.UsageUnrated{{UsageSeq: uint64(i)}}})
	}
	_, d1, err := withResults.Digest()
	require.NoError(t, err)
	_, d2, err := without.Digest()
	require.NoError(t, err)
	assert.Equal(t, d1, d2)
	assert.Equal(t, withResults.Items(), without.Items())
}

// feed writes JSON entries for one subject at consecutive sequences, into whichever ledgers
// a test names.
type feed struct {
	t    *testing.T
	subj string
	seq  uint64
}

func (f *feed) apply(typ string, v any, ls ...*Ledger) {
	f.t.Helper()
	b, err := json.Marshal(v)
	require.NoError(f.t, err)
	f.seq++
	for _, l := range ls {
		require.NoError(f.t, l.Apply(f.seq, f.subj, typ, b))
	}
}

// reservedByScan is Reserved by definition: every active, unexpired hold.
func reservedByScan(a *Account, now time.Time) events.Credits {
	var sum events.Credits
	for _, r := range a.Reservations {
		if r.StatusAt(now) == StatusActive {
			sum += r.Amount
		}
	}
	return sum
}

// Reserved keeps a running sum instead of scanning; random holds created, committed,
// released and expired (by entry, or only by the clock), before and after a snapshot restore,
// must always give what the scan gives.
func TestReservedMatchesTheScan(t *testing.T) {
	scope := events.Scope{Product: "acme", Env: "live"}
	subj := events.LedgerSubject("acme", "live", "c")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rnd := rand.New(rand.NewPCG(7, 9))
	l := NewLedger()
	f := &feed{t: t, subj: subj}
	apply := func(typ string, v any) { f.apply(typ, v, l) }
	apply(events.TypeCreditsGranted, events.CreditsGranted{Block: "b", Customer: "c", Amount: 1 << 40, Source: "wallet", Priority: 50, EffectiveAt: t0, At: t0})
	var ids []string
	for i := 0; i < 3000; i++ {
		at := t0.Add(time.Duration(i) * time.Second)
		switch k := rnd.IntN(10); {
		case k < 5 || len(ids) == 0:
			id := fmt.Sprint("r", i)
			ids = append(ids, id)
			ttl := time.Duration(1+rnd.IntN(600)) * time.Second
			apply(events.TypeReservationCreated, events.ReservationCreated{Reservation: id, Customer: "c", Amount: events.Credits(1 + rnd.IntN(1000)), ExpiresAt: at.Add(ttl), At: at})
		case k < 7:
			amt := events.Credits(rnd.IntN(500))
			apply(events.TypeReservationCommitted, events.ReservationCommitted{Reservation: ids[rnd.IntN(len(ids))], Customer: "c", Amount: amt, At: at})
		case k < 9:
			apply(events.TypeReservationReleased, events.ReservationReleased{Reservation: ids[rnd.IntN(len(ids))], Customer: "c", At: at})
		default:
			apply(events.TypeReservationExpired, events.ReservationReleased{Reservation: ids[rnd.IntN(len(ids))], Customer: "c", At: at})
		}
		if i == 1500 { // continue on a projection restored from its snapshot
			b, err := json.Marshal(l)
			require.NoError(t, err)
			r := NewLedger()
			require.NoError(t, json.Unmarshal(b, r))
			l = r
		}
		l.View(scope, "c", func(a *Account, _ uint64) {
			for _, now := range []time.Time{at, at.Add(time.Duration(rnd.IntN(700)) * time.Second), at.Add(-time.Minute)} {
				if got, want := a.Reserved(now), reservedByScan(a, now); got != want {
					t.Fatalf("step %d, now %s: Reserved %d, the scan %d", i, now, got, want)
				}
			}
		})
	}
}

// A snapshot encodes the accounts without holding the lock while the fold goes on (copy on
// write): every snapshot taken during a stream of changes must equal, byte for byte, a fresh
// fold of exactly the entries up to the sequence it names.
func TestSnapshotsWhileFoldingDescribeOneSequence(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	type entry struct {
		subj, typ string
		data      []byte
	}
	var es []entry
	add := func(c, typ string, v any) {
		b, err := json.Marshal(v)
		require.NoError(t, err)
		es = append(es, entry{events.LedgerSubject("acme", "live", c), typ, b})
	}
	for i := 0; i < 3000; i++ {
		c := fmt.Sprint("c", i%7)
		switch i % 3 {
		case 0:
			add(c, events.TypeCreditsGranted, events.CreditsGranted{Block: fmt.Sprint("blk_", i), Customer: c, Amount: 10, Source: "promo", Priority: 10, EffectiveAt: t0, At: t0})
		case 1:
			add(c, events.TypeReservationCreated, events.ReservationCreated{Reservation: fmt.Sprint("res_", i), Customer: c, Amount: 1, ExpiresAt: t0.Add(time.Hour), At: t0})
		default:
			add(c, events.TypeUsageRated, events.UsageRated{Customer: c, Debits: []events.UsageDebited{{Customer: c, Rule: "r", UsageSeq: uint64(i), Amount: 2, EventTime: t0}}})
		}
	}
	live := NewLedger()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i, e := range es {
			if err := live.Apply(uint64(i+1), e.subj, e.typ, e.data); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	var snaps [][]byte
	for running := true; running; {
		select {
		case <-done:
			running = false
		default:
		}
		b, err := json.Marshal(live)
		require.NoError(t, err)
		snaps = append(snaps, b)
	}
	require.Greater(t, len(snaps), 2)
	for _, b := range snaps {
		var got Ledger
		require.NoError(t, json.Unmarshal(b, &got))
		want := NewLedger()
		for i, e := range es[:got.Seq()] {
			require.NoError(t, want.Apply(uint64(i+1), e.subj, e.typ, e.data))
		}
		wb, err := json.Marshal(want)
		require.NoError(t, err)
		require.Equal(t, string(wb), string(b), "snapshot at %d", got.Seq())
	}
}

// A command applied ahead of the fold (ApplyOwn) on the customer's subject, while a quota lane
// entry for the same customer is still on its way, leaves exactly the state the fold in stream
// order leaves: the two subjects' command memories do not depend on which came first.
func TestApplyOwnAheadOfALaneEntry(t *testing.T) {
	scope := events.Scope{Product: "acme", Env: "live"}
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	grant := func(block string) []byte {
		b, err := json.Marshal(events.CreditsGranted{Block: block, Customer: "a", Amount: 10, Source: "topup", Priority: 40, EffectiveAt: at, At: at})
		require.NoError(t, err)
		return b
	}
	inc, err := json.Marshal(events.QuotaIncremented{Customer: "a", At: at, Items: []events.QuotaUse{{Quota: "api", Amount: events.MustDecimal("2"),
		Period: events.Period{Unit: "day", Count: 1}, At: at}}})
	require.NoError(t, err)
	type entry struct {
		seq          uint64
		subject, typ string
		cmd          string
		data         []byte
	}
	stream := []entry{
		{1, events.LedgerSubject("acme", "live", "a"), events.TypeCreditsGranted, "cmd-1", grant("blk_1")},
		{2, events.QuotaLaneSubject("acme", "live", 0), events.TypeQuotaIncremented, "cmd-2", inc},
		{3, events.LedgerSubject("acme", "live", "a"), events.TypeCreditsGranted, "cmd-3", grant("blk_3")},
	}
	reference := NewLedger()
	for _, e := range stream {
		_, err := reference.ApplyCommand(e.seq, e.subject, e.typ, e.cmd, e.data)
		require.NoError(t, err)
	}
	_, want, err := reference.Digest()
	require.NoError(t, err)

	l := NewLedger()
	_, err = l.ApplyCommand(1, stream[0].subject, stream[0].typ, stream[0].cmd, stream[0].data)
	require.NoError(t, err)
	ok, err := l.ApplyOwn(3, 1, scope, "a", stream[2].typ, stream[2].cmd, stream[2].data)
	require.NoError(t, err)
	require.True(t, ok, "a's previous entry on its subject is 1")
	for _, e := range stream[1:] {
		_, err := l.ApplyCommand(e.seq, e.subject, e.typ, e.cmd, e.data)
		require.NoError(t, err)
	}
	_, got, err := l.Digest()
	require.NoError(t, err)
	assert.Equal(t, want, got)
	a, _ := l.Account(scope, "a")
	for _, cmd := range []string{"cmd-1", "cmd-2", "cmd-3"} {
		assert.True(t, a.HasCommand(cmd), cmd)
	}
}
