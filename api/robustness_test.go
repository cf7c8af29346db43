package api_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api/problem"
)

// Malformed requests of every shape, from one seed: each answer keeps the contract (no 500, no
// 5xx but 503s, every error a problem+json whose status is the HTTP status, an invalid-field
// naming its field), and no refused request changes anything (the sentinel customer's balance
// and holds stay as they were). An API fuzz run in review found bodies with data after their
// JSON acted on, an invalid-field without a field, and a 503 that never passed; this keeps a
// smaller run of it, checking the state after every refusal.
func TestMalformedRequestsKeepTheContract(t *testing.T) {
	h := newHarness(t)
	for _, setup := range []struct{ method, path, body string }{
		{"PUT", "/v1/meters/tokens", `{"event_type":"llm","aggregation":"sum","value_property":"tokens"}`},
		{"PUT", "/v1/rules/tok", `{"meter":"tokens","model":"per_unit","price":"0.5"}`},
		{"PUT", "/v1/features/chat", `{"rule":"tok"}`},
		{"PUT", "/v1/quotas/q", `{"meter":"requests","limit":"100","period":{"unit":"hour"}}`},
		{"PUT", "/v1/plans/p", `{"credits":"10","period":{"unit":"month"},"mode":"prepaid"}`},
		{"POST", "/v1/customers/sentinel/grants", `{"amount":"100","source":"wallet"}`},
	} {
		r := h.do(setup.method, setup.path, keyAcme, jsonCT, setup.body)
		require.Less(t, r.status, 300, "%s %s: %s", setup.method, setup.path, r.raw)
	}
	state := func() string {
		r := h.do("GET", "/v1/customers/sentinel/balance", keyAcme, "", "")
		require.Equal(t, 200, r.status, r.raw)
		return fmt.Sprint(r.body["balance"], "/", r.body["reserved"])
	}
	before := state()

	// Valid bodies, all about the sentinel customer, to mutate.
	shapes := []struct{ method, path, body string }{
		{"POST", "/v1/customers/sentinel/grants", `{"amount":"1","source":"promo","priority":5,"expires_at":"2099-01-01T00:00:00Z"}`},
		{"POST", "/v1/customers/sentinel/topups", `{"amount":"1","cost_basis":"0.5"}`},
		{"POST", "/v1/reservations", `{"customer":"sentinel","amount":"1","ttl_seconds":60}`},
		{"POST", "/v1/entitlements/check", `{"customer":"sentinel","feature":"chat","quantity":"10"}`},
		{"POST", "/v1/quotas/q/increment", `{"customer":"sentinel","amount":"1"}`},
		{"POST", "/v1/quotas/q/adjust", `{"customer":"sentinel","amount":"1"}`},
		{"POST", "/v1/customers/sentinel/quotas/increment", `{"quotas":[{"key":"q","amount":"1"}]}`},
		{"POST", "/v1/subscriptions", `{"customer":"sentinel","plan":"p"}`},
		{"PUT", "/v1/quotas/q2", `{"meter":"requests","limit":"5","period":{"unit":"day","time_zone":"Europe/Berlin"}}`},
		{"PUT", "/v1/rules/tok2", `{"meter":"tokens","model":"graduated","tiers":[{"up_to":"10","unit_price":"1"},{"unit_price":"0.5"}]}`},
	}
	// mutate changes one thing of body; trailing reports whether it put something after the
	// JSON value, which every endpoint must refuse.
	mutate := func(rng *rand.Rand, body string) (mutated string, trailing bool) {
		var v map[string]any
		if json.Unmarshal([]byte(body), &v) != nil {
			return body, false
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		k := keys[rng.IntN(len(keys))]
		switch rng.IntN(12) {
		case 0:
			delete(v, k)
		case 1:
			v[k] = nil
		case 2:
			v[k] = []any{v[k]}
		case 3:
			v[k] = map[string]any{"x": v[k]}
		case 4:
			v[k] = "-1"
		case 5:
			v[k] = "1.0000001"
		case 6:
			v[k] = strings.Repeat("9", 40)
		case 7:
			v[k] = 1e300
		case 8:
			v[k] = strings.Repeat("é", 300)
		case 9:
			v[""] = 1
		case 10:
			v[k+"_"] = v[k]
		case 11:
			b, _ := json.Marshal(v)
			return string(b) + []string{"x", "}", " {}", "\xff", "[]"}[rng.IntN(5)], true
		}
		b, _ := json.Marshal(v)
		return string(b), false
	}
	rng := rand.New(rand.NewPCG(1, 2))
	statuses := map[int]int{}
	for i := 0; i < 600; i++ {
		s := shapes[rng.IntN(len(shapes))]
		body, trailing := mutate(rng, s.body)
		if !trailing && rng.IntN(8) == 0 {
			body = body[:rng.IntN(len(body)+1)] // truncated
		}
		r := h.do(s.method, s.path, keyAcme, jsonCT, body)
		statuses[r.status]++
		where := fmt.Sprintf("%s %s %s → %d %s", s.method, s.path, body, r.status, r.raw)
		require.NotEqual(t, 500, r.status, where)
		if r.status >= 500 {
			require.Equal(t, 503, r.status, where)
		}
		if trailing {
			require.Equal(t, 400, r.status, "data after the JSON value: %s", where)
		}
		if r.status >= 400 {
			require.Equal(t, problem.ContentType, r.header.Get("Content-Type"), where)
			require.EqualValues(t, r.status, r.body["status"], where)
			typ, _ := r.body["type"].(string)
			kind := strings.TrimPrefix(typ, problem.TypeBase)
			require.NotEqual(t, typ, kind, where)
			require.Equal(t, problem.Title(kind), r.body["title"], where)
			if kind == problem.InvalidField {
				require.NotEmpty(t, r.body["field"], where)
			}
			require.Equal(t, before, state(), "a refused request changed the sentinel's balance or holds: %s", where)
			continue
		}
		before = state() // admitted: what it changed is the new baseline
	}
	t.Logf("answers by status: %v", statuses)
	assert.Greater(t, statuses[400], 100, "most mutations are refused")
}
