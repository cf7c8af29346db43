package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// A keyed grant whose first answer was not stored (a 5xx — ErrNotVisibleYet, a lost ack —
// deletes the key's record) is retried: the command is written already, so nothing is decided
// again, and the answer is the block the first attempt granted (it was an empty block).
func TestRetriedGrantAfterAnUnstoredAnswer(t *testing.T) {
	h := newHarness(t)
	grant := `{"amount":"25","source":"topup"}`
	first := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, first.status, first.raw)
	sum := sha256.Sum256([]byte("acme/test\x00g-1"))
	require.NoError(t, h.idem.Delete(context.Background(), hex.EncodeToString(sum[:]))) // as a 5xx answer leaves it
	again := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, first.body["id"], again.body["id"], again.raw)
	assert.Equal(t, "25", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["balance"])
}

// The same for a top-up (it was a 503 on every retry).
func TestRetriedTopupAfterAnUnstoredAnswer(t *testing.T) {
	h := newHarness(t)
	body := `{"amount":"25"}`
	first := h.do("POST", "/v1/customers/c/topups", keyAcme, jsonCT, body, "Idempotency-Key", "t-1")
	require.Equal(t, 201, first.status, first.raw)
	sum := sha256.Sum256([]byte("acme/test\x00t-1"))
	require.NoError(t, h.idem.Delete(context.Background(), hex.EncodeToString(sum[:])))
	again := h.do("POST", "/v1/customers/c/topups", keyAcme, jsonCT, body, "Idempotency-Key", "t-1")
	require.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, first.body["id"], again.body["id"], again.raw)
}

// A commit for a hold this process's projection has not folded yet (it lags the stream by more
// than the 5 s it waits) is a 503, retryable and not stored for its Idempotency-Key — it was a
// 404, stored, so the retry stayed 404 once the projection knew the hold.
func TestCommitOnALaggingProjectionIsRetryable(t *testing.T) {
	lagging := projector.NewLedger() // not followed: stands for a projection that is behind
	h := newHarnessWith(t, func(o *api.Options) { o.Ledger = lagging })
	ctx := context.Background()
	subject := events.LedgerSubject("acme", "test", "c")
	put := func(typ string, v any) (uint64, []byte) {
		b, _ := json.Marshal(v)
		ack, err := h.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: b, Header: nats.Header{events.HeaderType: []string{typ}}})
		require.NoError(t, err)
		return ack.Sequence, b
	}
	now := time.Now().UTC()
	s1, g := put(events.TypeCreditsGranted, events.CreditsGranted{Block: "b1", Customer: "c", Amount: 10_000_000, Source: "wallet", Priority: 100, EffectiveAt: now.Add(-time.Hour), At: now.Add(-time.Hour)})
	s2, rsv := put(events.TypeReservationCreated, events.ReservationCreated{Reservation: "res_x", Customer: "c", Amount: 5_000_000, ExpiresAt: now.Add(time.Hour), At: now})

	r := h.do("POST", "/v1/reservations/res_x/commit", keyAcme, jsonCT, `{}`, "Idempotency-Key", "k-1")
	assert.GreaterOrEqual(t, r.status, 500, "the hold exists; a projection behind the stream cannot say 404: %s", r.raw)

	// The projection catches up; the client retries with its key.
	require.NoError(t, lagging.Apply(s1, subject, events.TypeCreditsGranted, g))
	require.NoError(t, lagging.Apply(s2, subject, events.TypeReservationCreated, rsv))
	r = h.do("POST", "/v1/reservations/res_x/commit", keyAcme, jsonCT, `{}`, "Idempotency-Key", "k-1")
	assert.NotEqual(t, 404, r.status, r.raw)
}

// The takeover of a key abandoned by an earlier run (a process that died after writing the
// grant): the retry is answered with the block granted, and that answer is stored for the key
// (it was an empty block, stored and replayed).
func TestTakenOverGrantAnswersTheBlock(t *testing.T) {
	h := newHarnessWith(t, func(o *api.Options) { o.Node = "host-a:/var/lib/allot" })
	grant := `{"amount":"25","source":"topup"}`
	first := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, first.status)
	sum := sha256.Sum256([]byte("acme/test\x00g-1"))
	kvKey := hex.EncodeToString(sum[:])
	e, err := h.idem.Get(context.Background(), kvKey)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(e.Value(), &rec))
	rec["state"], rec["started"], rec["node"], rec["incarnation"] = "in_flight", time.Now().UTC(), "host-a:/var/lib/allot", "an-earlier-run"
	b, _ := json.Marshal(rec)
	_, err = h.idem.Put(context.Background(), kvKey, b)
	require.NoError(t, err)
	r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, first.body["id"], r.body["id"], r.raw)
	r = h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	assert.Equal(t, first.body["id"], r.body["id"], "replayed: %s", r.raw)
}

// A keyed commit whose answer was not stored is retried after the customer's account has
// remembered 32 newer keyed commands (so its recent command ids no longer name it): the hold
// remembers what ended it, and the retry is answered as the commit was (it was a 409
// reservation-ended, stored). The same for a keyed reservation.
func TestRetriedCommitAfterTheCommandWindow(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"100","source":"wallet"}`).status)
	res := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"5"}`)
	require.Equal(t, 201, res.status, res.raw)
	id := res.body["id"].(string)
	first := h.do("POST", "/v1/reservations/"+id+"/commit", keyAcme, jsonCT, `{}`, "Idempotency-Key", "commit-1")
	require.Equal(t, 200, first.status, first.raw)
	sum := sha256.Sum256([]byte("acme/test\x00commit-1"))
	require.NoError(t, h.idem.Delete(context.Background(), hex.EncodeToString(sum[:]))) // as a 5xx answer leaves it
	for i := 0; i < 32; i++ {
		r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`, "Idempotency-Key", fmt.Sprint("g-", i))
		require.Equal(t, 201, r.status, r.raw)
	}
	again := h.do("POST", "/v1/reservations/"+id+"/commit", keyAcme, jsonCT, `{}`, "Idempotency-Key", "commit-1")
	assert.Equal(t, first.status, again.status, again.raw)
	assert.Equal(t, "committed", again.body["status"], again.raw)
	// Another key's commit of the ended hold is still refused.
	other := h.do("POST", "/v1/reservations/"+id+"/commit", keyAcme, jsonCT, `{}`, "Idempotency-Key", "commit-2")
	assert.Equal(t, 409, other.status, other.raw)

	// A keyed reservation of more than half the balance, its answer lost, retried after 32
	// newer commands: the same hold, not a refusal for want of credits (its own hold counted)
	// nor a second one.
	hold := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"100"}`, "Idempotency-Key", "hold-1")
	require.Equal(t, 201, hold.status, hold.raw)
	sum = sha256.Sum256([]byte("acme/test\x00hold-1"))
	require.NoError(t, h.idem.Delete(context.Background(), hex.EncodeToString(sum[:])))
	for i := 0; i < 32; i++ {
		r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`, "Idempotency-Key", fmt.Sprint("h-", i))
		require.Equal(t, 201, r.status, r.raw)
	}
	balance := h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["reserved"]
	again = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"100"}`, "Idempotency-Key", "hold-1")
	require.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, hold.body["id"], again.body["id"])
	assert.Equal(t, balance, h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["reserved"], "held once")
}
