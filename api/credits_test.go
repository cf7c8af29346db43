package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/api/problem"
)

const jsonCT = "application/json"

func TestGrantsAndBalance(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"500","source":"trial","expires_at":"2099-01-15T00:00:00Z"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "500", r.body["remaining"])
	assert.EqualValues(t, 10, r.body["priority"], "trial defaults to priority 10")
	r = h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":2000.5,"source":"wallet"}`)
	require.Equal(t, 201, r.status, r.raw)
	r = h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"10","source":"promo","effective_at":"2099-01-01T00:00:00Z"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "pending", r.body["status"])

	r = h.do("GET", "/v1/customers/c1/balance", keyAcmeUser, "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "2500.5", r.body["balance"], "a block not yet effective is not in the balance")
	assert.Equal(t, "2500.5", r.body["effective_balance"])
	blocks := r.body["blocks"].([]any)
	require.Len(t, blocks, 3)
	assert.Equal(t, "trial", blocks[0].(map[string]any)["source"], "blocks are listed in burn order")
	// Another product sees an empty customer of its own.
	r = h.do("GET", "/v1/customers/c1/balance", keyGlobex, "", "")
	assert.Equal(t, "0", r.body["balance"])

	for _, bad := range []struct{ body, field string }{
		{`{"amount":"0","source":"trial"}`, "amount"},
		{`{"amount":"-5","source":"trial"}`, "amount"},
		{`{"source":"trial"}`, "amount"},
		{`{"amount":"1","source":"gift"}`, "source"},
		{`{"amount":"0.0000001","source":"wallet"}`, "amount"},
		{`{"amount":"abc","source":"wallet"}`, "amount"},
		{`{"amount":"1","source":"wallet","expires_at":"tomorrow"}`, "expires_at"},
		{`{"amount":"1","source":"wallet","bogus":1}`, "bogus"},
		{`{"amount":"1","source":"wallet",`, ""},
		{`{"amount":"1","source":"wallet","expires_at":"2000-01-01T00:00:00Z","effective_at":"2001-01-01T00:00:00Z"}`, "expires_at"},
		{`{"amount":"1","source":"wallet","cost_basis":"-1"}`, "cost_basis"},
	} {
		r := h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, bad.body)
		require.Equal(t, 400, r.status, bad.body)
		field, _ := r.body["field"].(string)
		assert.Equal(t, bad.field, field, bad.body) // "": not JSON, no field to name
	}
}

func TestReservationLifecycle(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`)
	r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"6"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "active", r.body["status"])
	id := r.body["id"].(string)
	bal := h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	assert.Equal(t, "10", bal.body["balance"])
	assert.Equal(t, "6", bal.body["reserved"])
	assert.Equal(t, "4", bal.body["effective_balance"])

	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"5"}`)
	requireProblem(t, r, 409, "insufficient-credits")

	r = h.do("POST", "/v1/reservations/"+id+"/commit", keyAcme, jsonCT, `{"amount":"2.5"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "committed", r.body["status"])
	bal = h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	assert.Equal(t, "7.5", bal.body["balance"], "a partial commit returns the rest")
	assert.Equal(t, "0", bal.body["reserved"])
	requireProblem(t, h.do("POST", "/v1/reservations/"+id+"/commit", keyAcme, jsonCT, ``), 409, "reservation-ended")
	requireProblem(t, h.do("POST", "/v1/reservations/"+id+"/release", keyAcme, jsonCT, ``), 409, "reservation-ended")

	// Over-commit debits the extra, into overage if need be.
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"7"}`)
	require.Equal(t, 201, r.status, r.raw)
	r = h.do("POST", "/v1/reservations/"+r.body["id"].(string)+"/commit", keyAcme, jsonCT, `{"amount":"9"}`)
	require.Equal(t, 200, r.status, r.raw)
	bal = h.do("GET", "/v1/customers/c/balance", keyAcme, "", "")
	assert.Equal(t, "-1.5", bal.body["balance"])
	assert.Equal(t, "1.5", bal.body["overage"])

	// Release returns everything; TTL expiry releases by itself; commit after expiry is 409.
	h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"100","source":"topup"}`)
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"50"}`)
	rid := r.body["id"].(string)
	r = h.do("POST", "/v1/reservations/"+rid+"/release", keyAcme, jsonCT, `{}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "released", r.body["status"])
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"50","ttl_seconds":1}`)
	require.Equal(t, 201, r.status, r.raw)
	rid = r.body["id"].(string)
	assert.Equal(t, "50", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["reserved"])
	time.Sleep(1100 * time.Millisecond)
	assert.Equal(t, "0", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["reserved"])
	requireProblem(t, h.do("POST", "/v1/reservations/"+rid+"/commit", keyAcme, jsonCT, `{}`), 409, "reservation-expired")
	requireProblem(t, h.do("POST", "/v1/reservations/"+rid+"/release", keyAcme, jsonCT, `{}`), 409, "reservation-expired")
	assert.Equal(t, "expired", h.do("GET", "/v1/reservations/"+rid, keyAcme, "", "").body["status"])

	requireProblem(t, h.do("GET", "/v1/reservations/res_nope", keyAcme, "", ""), 404, "not-found")
	requireProblem(t, h.do("GET", "/v1/reservations/"+id, keyGlobex, "", ""), 404, "not-found")
	for _, bad := range []string{`{"customer":"c"}`, `{"amount":"1"}`, `{"customer":"c","amount":"1","ttl_seconds":0}`, `{"customer":"c","amount":"1","ttl_seconds":999999}`, `{"customer":"c","amount":"0"}`,
		`{"customer":"c","amount":"1","ttl_seconds":18446744074}`, `{"customer":"c","amount":"1","ttl_seconds":9223372037}`} { // these two wrapped to short TTLs
		assert.Equal(t, 400, h.do("POST", "/v1/reservations", keyAcme, jsonCT, bad).status, bad)
	}
}

// TestConcurrentReservationsNeverOverbook: 1,000 concurrent reservations of 1 credit against
// a balance of 100 admit exactly 100.
func TestConcurrentReservationsNeverOverbook(t *testing.T) {
	h := newHarness(t)
	h.do("POST", "/v1/customers/hot/grants", keyAcme, jsonCT, `{"amount":"100","source":"wallet"}`)
	codes := h.concurrently(1000, "POST", "/v1/reservations", `{"customer":"hot","amount":"1"}`)
	assert.Equal(t, map[int]int{201: 100, 409: 900}, codes)
	bal := h.do("GET", "/v1/customers/hot/balance", keyAcme, "", "")
	assert.Equal(t, "100", bal.body["reserved"])
	assert.Equal(t, "0", bal.body["effective_balance"])
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t)
	grant := `{"amount":"25","source":"topup"}`
	first := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, first.status, first.raw)
	again := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	assert.Equal(t, first.body["id"], again.body["id"])
	assert.Equal(t, "25", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["balance"], "a retried grant is applied once")

	r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"26","source":"topup"}`, "Idempotency-Key", "g-1")
	requireProblem(t, r, 422, "idempotency-key-reused")
	// Keys are scoped by product and env: the same key elsewhere is a new request.
	r = h.do("POST", "/v1/customers/c/grants", keyGlobex, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, r.status, r.raw)
	assert.Empty(t, r.header.Get("Idempotent-Replayed"))

	// While the first request is in flight, a retry is 409 with Retry-After. A request is made
	// to look in flight by turning its stored record back into an in-flight one.
	require.Equal(t, 201, h.do("POST", "/v1/customers/slow/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-2").status)
	sum := sha256.Sum256([]byte("acme/test\x00g-2"))
	kvKey := hex.EncodeToString(sum[:])
	e, err := h.idem.Get(context.Background(), kvKey)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(e.Value(), &rec))
	rec["state"], rec["started"] = "in_flight", time.Now().UTC()
	b, _ := json.Marshal(rec)
	_, err = h.idem.Put(context.Background(), kvKey, b)
	require.NoError(t, err)
	r = h.do("POST", "/v1/customers/slow/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-2")
	requireProblem(t, r, 409, "idempotency-key-in-flight")
	assert.Equal(t, "1", r.header.Get("Retry-After"))

	// Reservations derive their id from the key, so a retry cannot hold twice.
	ra := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"5"}`, "Idempotency-Key", "r-1")
	rb := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c","amount":"5"}`, "Idempotency-Key", "r-1")
	assert.Equal(t, ra.body["id"], rb.body["id"])
	assert.Equal(t, "5", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["reserved"])
}

func TestEntitlementCheck(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("PUT", "/v1/rules/tok", keyAcme, jsonCT, `{"meter":"tokens","model":"per_unit","price":"0.01","effective_from":"2020-01-01T00:00:00Z"}`).status)
	r := h.do("PUT", "/v1/features/chat", keyAcme, jsonCT, `{"rule":"tok","overdraft_limit":"1"}`)
	require.Equal(t, 200, r.status, r.raw)
	requireProblem(t, h.do("PUT", "/v1/features/bad", keyAcme, jsonCT, `{"rule":"nope"}`), 422, "invalid-field")
	h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"2","source":"wallet"}`)
	check := func(q string) map[string]any {
		r := h.do("POST", "/v1/entitlements/check", keyAcme, jsonCT, fmt.Sprintf(`{"customer":"c","feature":"chat","quantity":%q}`, q))
		require.Equal(t, 200, r.status, r.raw)
		return r.body
	}
	ok := check("100")
	assert.Equal(t, true, ok["allowed"])
	assert.Equal(t, "1", ok["estimated_cost"])
	assert.Equal(t, true, check("300")["allowed"], "2 − 3 = −1 is within the overdraft limit")
	no := check("301")
	assert.Equal(t, false, no["allowed"])
	assert.Equal(t, "insufficient_credits", no["reason"])
	r = h.do("POST", "/v1/entitlements/check", keyAcme, jsonCT, `{"customer":"c","feature":"ghost"}`)
	assert.Equal(t, false, r.body["allowed"])
	assert.Equal(t, "unknown_feature", r.body["reason"])
	assert.Equal(t, 400, h.do("POST", "/v1/entitlements/check", keyAcme, jsonCT, `{"feature":"chat"}`).status)
}

func TestCustomersByUUID(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/customers/user@example.com/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`)
	require.Equal(t, 201, r.status, r.raw)
	bal := h.do("GET", "/v1/customers/user@example.com/balance", keyAcme, "", "")
	id := bal.body["customer_id"].(string)
	require.Regexp(t, `^[0-9a-f-]{36}$`, id)

	byID := h.do("GET", "/v1/customers/"+id+"/balance", keyAcme, "", "")
	assert.Equal(t, "user@example.com", byID.body["customer"])
	assert.Equal(t, "10", byID.body["balance"])
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"`+id+`","amount":"4"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "user@example.com", r.body["customer"])
	r = h.do("POST", "/v1/customers/"+id+"/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`)
	require.Equal(t, 201, r.status, r.raw)
	bal = h.do("GET", "/v1/customers/user@example.com/balance", keyAcme, "", "")
	assert.Equal(t, "11", bal.body["balance"])
	assert.Equal(t, "4", bal.body["reserved"])
	// The UUID belongs to one product and env: elsewhere it names no customer.
	other := h.do("GET", "/v1/customers/"+id+"/balance", keyGlobex, "", "")
	requireProblem(t, other, 404, problem.NotFound)
	assert.Equal(t, "id", other.body["field"])
	// A customer with no entries yet has a UUID (the balance says it) but is addressed by its
	// own id until its first entry: a grant to the UUID would credit a customer named by it.
	fresh := h.do("GET", "/v1/customers/newcomer/balance", keyAcme, "", "").body["customer_id"].(string)
	requireProblem(t, h.do("POST", "/v1/customers/"+fresh+"/grants", keyAcme, jsonCT, `{"amount":"5","source":"wallet"}`), 404, problem.NotFound)
	r = h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"`+fresh+`","amount":"1"}`)
	requireProblem(t, r, 404, problem.NotFound)
	assert.Equal(t, "customer", r.body["field"])
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/q", keyAcme, jsonCT, `{"meter":"requests","limit":"10","period":{"unit":"day"}}`).status)
	r = h.do("POST", "/v1/quotas/q/check", keyAcme, jsonCT, `{"customer":"`+fresh+`"}`)
	requireProblem(t, r, 404, problem.NotFound)
	assert.Equal(t, "customer", r.body["field"])
	require.Equal(t, 201, h.do("POST", "/v1/customers/newcomer/grants", keyAcme, jsonCT, `{"amount":"5","source":"wallet"}`).status)
	assert.Equal(t, "5", h.do("GET", "/v1/customers/"+fresh+"/balance", keyAcme, "", "").body["balance"], "known by its UUID from its first entry")
	// A producer's own UUIDs stay external ids.
	own := "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	assert.Equal(t, own, h.do("GET", "/v1/customers/"+own+"/balance", keyAcme, "", "").body["customer"])
	// Usage naming the UUID lands on the external id's subject.
	r = h.do("POST", "/v1/events", keyAcme, jsonCT, `{"id":"u1","type":"x","customer":"`+id+`"}`)
	require.Equal(t, 202, r.status, r.raw)
	s, err := h.js.Stream(context.Background(), "ALLOT_USAGE")
	require.NoError(t, err)
	m, err := s.GetLastMsgForSubject(context.Background(), "allot.usage.*.acme.test.user~40example~2ecom")
	require.NoError(t, err)
	assert.Contains(t, string(m.Data), `"customer":"user@example.com"`)
}

// A key left in flight by an earlier run of this very node (a process that died mid-request)
// is taken over at once by the retry; one held by another node waits for inFlightTimeout.
func TestIdempotencyKeyAbandonedByAnEarlierRun(t *testing.T) {
	h := newHarnessWith(t, func(o *api.Options) { o.Node = "host-a:/var/lib/allot" })
	grant := `{"amount":"25","source":"topup"}`
	require.Equal(t, 201, h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1").status)
	sum := sha256.Sum256([]byte("acme/test\x00g-1"))
	kvKey := hex.EncodeToString(sum[:])
	inFlight := func(node string) {
		e, err := h.idem.Get(context.Background(), kvKey)
		require.NoError(t, err)
		var rec map[string]any
		require.NoError(t, json.Unmarshal(e.Value(), &rec))
		rec["state"], rec["started"], rec["node"], rec["incarnation"] = "in_flight", time.Now().UTC(), node, "an-earlier-run"
		b, _ := json.Marshal(rec)
		_, err = h.idem.Put(context.Background(), kvKey, b)
		require.NoError(t, err)
	}
	inFlight("host-b:/var/lib/allot")
	requireProblem(t, h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1"), 409, "idempotency-key-in-flight")
	inFlight("host-a:/var/lib/allot")
	r := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, r.status, r.raw)
	assert.Equal(t, "25", h.do("GET", "/v1/customers/c/balance", keyAcme, "", "").body["balance"], "taken over, and still applied once")
}
