package projector

import (
	"encoding/json"
	"fmt"
	mrand "math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

// aheadEntry is one entry of a generated ledger stream.
type aheadEntry struct {
	seq          uint64
	subject, typ string
	cmd          string
	data         []byte
	customer     string // on the customer's own subject; "" for a lane entry
	prev         uint64 // the previous sequence on the same subject
	own          bool   // written by the live process: ApplyOwn may fold it ahead
}

// genAheadStream writes a random mix of every kind of entry that shares an account across
// subjects: grants, reservations and their commits and releases, rated usage with quota uses
// (the customer's subject), and keyed and batched increments, resets and adjustments (two
// quota lanes).
func genAheadStream(r *mrand.Rand, n int) []aheadEntry {
	const scopeP, scopeE = "acme", "live"
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	day := events.Period{Unit: "day", Count: 1}
	customers := []string{"a", "b", "c"}
	lastOn := map[string]uint64{}
	var holds []struct{ customer, id string }
	var out []aheadEntry
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		return b
	}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		at := t0.Add(time.Duration(seq) * time.Minute)
		c := customers[r.IntN(len(customers))]
		e := aheadEntry{seq: seq, customer: c, own: r.IntN(2) == 0}
		switch k := r.IntN(8); {
		case k == 0:
			e.typ, e.cmd = events.TypeCreditsGranted, fmt.Sprintf("cmd-%d", seq)
			e.data = mustJSON(events.CreditsGranted{Block: fmt.Sprint("blk_", seq), Customer: c, Amount: events.Credits(1_000_000 * (1 + r.IntN(5))),
				Source: "topup", Priority: 40 + r.IntN(3), EffectiveAt: at, At: at})
		case k == 1:
			id := fmt.Sprint("res_", seq)
			holds = append(holds, struct{ customer, id string }{c, id})
			e.typ, e.cmd = events.TypeReservationCreated, fmt.Sprintf("cmd-%d", seq)
			e.data = mustJSON(events.ReservationCreated{Reservation: id, Customer: c, Amount: 500_000, ExpiresAt: at.Add(time.Hour), At: at})
		case k == 2 && len(holds) > 0:
			h := holds[0]
			holds = holds[1:]
			e.customer = h.customer
			e.typ, e.cmd = events.TypeReservationCommitted, fmt.Sprintf("cmd-%d", seq)
			e.data = mustJSON(events.ReservationCommitted{Reservation: h.id, Customer: h.customer, Amount: 250_000, At: at})
		case k == 3:
			e.own = false // rating writes usage; it is folded in order
			e.typ = events.TypeUsageRated
			e.data = mustJSON(events.UsageRated{ID: fmt.Sprint("u", seq), Customer: c, FirstSeq: seq, LastSeq: seq,
				Debits: []events.UsageDebited{{ID: fmt.Sprint("d", seq), Customer: c, UsageSeq: seq, Amount: 100_000, EventTime: at}},
				Quotas: []events.QuotaUse{{Quota: "api", Amount: events.MustDecimal("1"), Period: day, At: at, UsageSeq: seq}}})
		default: // the quota lanes
			e.customer, e.own = "", false // lane entries are never folded ahead
			lane := r.IntN(2)
			e.subject = events.QuotaLaneSubject(scopeP, scopeE, lane)
			switch r.IntN(4) {
			case 0:
				e.typ, e.cmd = events.TypeQuotaIncremented, fmt.Sprintf("cmd-%d", seq)
				e.data = mustJSON(events.QuotaIncremented{Customer: c, At: at, Items: []events.QuotaUse{{Quota: "api", Amount: events.MustDecimal("2"), Period: day, At: at}}})
			case 1:
				var batch events.QuotaIncrements
				for _, bc := range customers[:1+r.IntN(3)] {
					batch.Increments = append(batch.Increments, events.QuotaIncremented{Customer: bc, At: at, Items: []events.QuotaUse{{Quota: "api", Amount: events.MustDecimal("1"), Period: day, At: at}}})
				}
				e.typ = events.TypeQuotaIncrements
				var err error
				if e.data, err = batch.AppendJSON(nil); err != nil {
					panic(err)
				}
			case 2:
				e.typ, e.cmd = events.TypeQuotaReset, fmt.Sprintf("cmd-%d", seq)
				e.data = mustJSON(events.QuotaReset{Customer: c, Quota: "api", Period: day, At: at})
			default:
				e.typ, e.cmd = events.TypeQuotaAdjusted, fmt.Sprintf("cmd-%d", seq)
				e.data = mustJSON(events.QuotaAdjusted{Customer: c, Quota: "api", Amount: events.MustDecimal("-1"), Period: day, At: at})
			}
		}
		if e.typ == "" { // a commit with no hold to commit: a grant instead
			e.typ, e.cmd = events.TypeCreditsGranted, fmt.Sprintf("cmd-%d", seq)
			e.data = mustJSON(events.CreditsGranted{Block: fmt.Sprint("blk_", seq), Customer: c, Amount: 1_000_000, Source: "topup", Priority: 40, EffectiveAt: at, At: at})
		}
		if e.subject == "" {
			e.subject = events.LedgerSubject(scopeP, scopeE, e.customer)
		}
		e.prev = lastOn[e.subject]
		lastOn[e.subject] = seq
		out = append(out, e)
	}
	return out
}

// Whatever the moment a process applies its own entries ahead of the fold (ApplyOwn, at its
// acknowledgement), the fold then catching up gives exactly the state of folding the stream in
// order: the live digest is the replay's. A divergence of this kind (lane commands and the
// customer's own commands remembered in one list, in the order of arrival) failed
// `replay --verify` in a cluster once in many runs; this finds it at once.
func TestAnyApplyOwnScheduleFoldsLikeTheStream(t *testing.T) {
	scope := events.Scope{Product: "acme", Env: "live"}
	for seed := uint64(1); seed <= 200; seed++ {
		r := mrand.New(mrand.NewPCG(seed, 7))
		stream := genAheadStream(r, 20+r.IntN(60))
		reference := NewLedger()
		for _, e := range stream {
			_, err := reference.ApplyCommand(e.seq, e.subject, e.typ, e.cmd, e.data)
			require.NoError(t, err)
		}
		_, want, err := reference.Digest()
		require.NoError(t, err)

		live := NewLedger()
		folded := 0
		aheadApplied := 0
		for folded < len(stream) {
			// Either an own entry not folded yet is acknowledged now and applied ahead if it
			// can be, or the fold moves on by one entry.
			if r.IntN(3) == 0 {
				e := stream[folded+r.IntN(len(stream)-folded)]
				if e.own {
					ok, err := live.ApplyOwn(e.seq, e.prev, scope, e.customer, e.typ, e.cmd, e.data)
					require.NoError(t, err)
					if ok && e.seq > live.Seq() {
						aheadApplied++
					}
				}
				continue
			}
			e := stream[folded]
			_, err := live.ApplyCommand(e.seq, e.subject, e.typ, e.cmd, e.data)
			require.NoError(t, err)
			folded++
		}
		_, got, err := live.Digest()
		require.NoError(t, err)
		require.Equal(t, want, got, "seed %d: %d entries, %d applied ahead", seed, len(stream), aheadApplied)
	}
}
