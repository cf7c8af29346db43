package api_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
)

// Two binary-mode CloudEvents with one Idempotency-Key, the same JSON data, but different
// ce-id / ce-subject are two different requests: the second is a 422 (it was answered with the
// first one's stored 202, and never stored). The same event again is replayed.
func TestBinaryCloudEventHeadersAreInTheRequestHash(t *testing.T) {
	h := newHarness(t)
	send := func(id, subject string) (int, string, string) {
		req, _ := http.NewRequest("POST", h.url+"/v1/events", bytes.NewReader([]byte(`{"tokens":5}`)))
		req.Header.Set("Authorization", "Bearer "+keyAcme)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "batch-1")
		for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": id, "ce-source": "/svc", "ce-type": "llm", "ce-subject": subject} {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("Idempotent-Replayed"), string(b)
	}
	st, _, raw := send("ev-1", "alice")
	require.Equal(t, 202, st, raw)
	st, replayed, raw := send("ev-2", "bob")
	assert.Equal(t, 422, st, raw)
	assert.Equal(t, "", replayed)
	st, replayed, raw = send("ev-1", "alice")
	assert.Equal(t, 202, st, raw)
	assert.Equal(t, "true", replayed)
	assert.EqualValues(t, 1, h.usageCount())
}

// A replayed answer carries the headers a client acts on (RateLimit, Retry-After, Location…) as
// the first did (it kept only the status, Content-Type and body). A 429 is not stored at all:
// nothing happened, and the same request is worth sending again after Retry-After.
func TestReplayedAnswerKeepsItsHeaders(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT, `{"meter":"requests","limit":1,"period":{"unit":"hour"}}`).status)
	ok1 := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "i-1")
	require.Equal(t, 200, ok1.status, ok1.raw)
	require.NotEmpty(t, ok1.header.Get("RateLimit"))
	ok2 := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "i-1")
	require.Equal(t, "true", ok2.header.Get("Idempotent-Replayed"))
	assert.Equal(t, ok1.header.Get("RateLimit-Policy"), ok2.header.Get("RateLimit-Policy"), "200 replay lost RateLimit-Policy")

	first := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "i-2")
	requireProblem(t, first, 429, "quota-exceeded")
	require.NotEmpty(t, first.header.Get("Retry-After"))
	again := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "i-2")
	require.Equal(t, 429, again.status)
	assert.Empty(t, again.header.Get("Idempotent-Replayed"), "a 429 is decided again, not replayed")
	assert.NotEmpty(t, again.header.Get("Retry-After"))
	assert.NotEmpty(t, again.header.Get("RateLimit"))
	// Room again (a reset): the same key is admitted now.
	require.Equal(t, 200, h.do("POST", "/v1/quotas/api/reset", keyAcme, jsonCT, `{"customer":"c"}`).status)
	ok3 := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "i-2")
	assert.Equal(t, 200, ok3.status, ok3.raw)
}

// The same request, its Content-Type spelled with a charset parameter on the retry, is the
// same request (it was a 422).
func TestSameRequestWithCharsetIsNotRefused(t *testing.T) {
	h := newHarness(t)
	grant := `{"amount":"25","source":"topup"}`
	first := h.do("POST", "/v1/customers/c/grants", keyAcme, "application/json", grant, "Idempotency-Key", "g-1")
	require.Equal(t, 201, first.status, first.raw)
	again := h.do("POST", "/v1/customers/c/grants", keyAcme, "application/json; charset=utf-8", grant, "Idempotency-Key", "g-1")
	assert.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
}

// An answer larger than the bucket's value limit (1 MiB) cannot be stored: the key is released,
// and a retry runs again (it stayed in flight: 409 for a minute). Events are deduplicated by id,
// so the retry stores nothing twice.
func TestLargeAnswerReleasesTheKey(t *testing.T) {
	h := newHarnessWith(t, func(o *api.Options) { o.MaxBody = 5 << 20 })
	var b strings.Builder
	b.WriteString(`[{"id":"ok-1","type":"llm","customer":"c","data":{"tokens":1}}`)
	for i := 0; i < 8000; i++ {
		b.WriteString(",5")
	}
	b.WriteString("]")
	first := h.do("POST", "/v1/events", keyAcme, jsonCT, b.String(), "Idempotency-Key", "big-1")
	require.Equal(t, 202, first.status)
	t.Logf("answer is %d bytes", len(first.raw))
	again := h.do("POST", "/v1/events", keyAcme, jsonCT, b.String(), "Idempotency-Key", "big-1")
	assert.Equal(t, 202, again.status, "%.300s", again.raw)
	assert.EqualValues(t, 1, h.usageCount())
}

// A process whose catalog lags the config stream (a quota just PUT through another process)
// does not answer a keyed increment 404 on it: it catches up first, or answers 503 (retryable,
// not stored) when it cannot. The 404 was stored, and replayed once the catalog had caught up.
func TestLaggingCatalogIsNot404(t *testing.T) {
	var opts api.Options
	h := newHarnessWith(t, func(o *api.Options) { opts = *o })
	ctx := context.Background()
	cat2 := catalog.New()
	f2 := catalog.NewFollower(h.js, bus.ConfigStream, cat2, slog.New(slog.DiscardHandler))
	fctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f2.Run(fctx); close(done) }()
	require.NoError(t, f2.Sync(ctx)) // keys and meters; not yet the quota
	stop()
	<-done // the follower stops: this process's catalog lags from here
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT, `{"meter":"requests","limit":5,"period":{"unit":"hour"}}`).status)
	opts.Catalog = cat2
	srv2 := httptest.NewServer(api.New(opts).Handler())
	t.Cleanup(srv2.Close)
	h2 := *h
	h2.url = srv2.URL
	r := h2.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "inc-1")
	assert.NotEqual(t, 404, r.status, "a lagging catalog answered 404: %s", r.raw)
	if r.status != 200 {
		requireProblem(t, r, 503, "unavailable")
	}
	go f2.Run(ctx)
	require.NoError(t, f2.Sync(ctx)) // caught up
	_, ok := cat2.Quota(events.Scope{Product: "acme", Env: "test"}, "api")
	require.True(t, ok)
	r = h2.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "inc-1")
	assert.Equal(t, 200, r.status, "retry after the catalog caught up: %s (replayed=%s)", r.raw, r.header.Get("Idempotent-Replayed"))
}

// The gateway's problem types are in docs/errors.md, and POST /v1/events lists the
// Idempotency-Key it takes.
func TestDocsCoverGatewayProblemsAndEventsKey(t *testing.T) {
	doc, _ := os.ReadFile("../docs/errors.md")
	for _, f := range []string{"../gateway/proxy.go", "../gateway/middleware.go"} {
		src, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`writeProblem\(w, [^,]+, "([a-z-]+)"`).FindAllSubmatch(src, -1) {
			if !strings.Contains(string(doc), "`"+string(m[1])+"`") {
				t.Errorf("%s: problem type %q (https://allot.dev/problems/%s) is not in docs/errors.md", f, m[1], m[1])
			}
		}
	}
	oa, _ := os.ReadFile("../schemas/openapi.yaml")
	s := string(oa)
	i := strings.Index(s, "\n  /v1/events:")
	j := strings.Index(s[i+1:], "\n  /v1/")
	assert.Contains(t, s[i:i+1+j], "IdempotencyKey", "POST /v1/events takes Idempotency-Key (server.go:166) but the OpenAPI operation does not list it")
}

// A keyed increment whose answer was lost (a 5xx deletes the key's record) is retried after 32
// newer keyed commands of the customer, so its account no longer names it: JetStream's dedup
// window keeps it from counting twice, and the answer is the use as it stands (it said the
// retry counted once more).
func TestRetriedIncrementAnswersTheUseAsItStands(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 200, h.do("PUT", "/v1/quotas/api", keyAcme, jsonCT, `{"meter":"requests","limit":"1000","period":{"unit":"day"}}`).status)
	first := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "inc-1")
	require.Equal(t, 200, first.status, first.raw)
	sum := sha256.Sum256([]byte("acme/test\x00inc-1"))
	require.NoError(t, h.idem.Delete(context.Background(), hex.EncodeToString(sum[:]))) // as a 5xx answer leaves it
	for i := 0; i < 32; i++ {
		r := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", fmt.Sprint("other-", i))
		require.Equal(t, 200, r.status, r.raw)
	}
	again := h.do("POST", "/v1/quotas/api/increment", keyAcme, jsonCT, `{"customer":"c"}`, "Idempotency-Key", "inc-1")
	require.Equal(t, 200, again.status, again.raw)
	q := h.do("GET", "/v1/customers/c/quotas", keyAcme, "", "")
	assert.Equal(t, "33", q.body["data"].([]any)[0].(map[string]any)["used"], q.raw)
	assert.Equal(t, "33", again.body["used"], again.raw)
}

// DESIGN.md, Idempotency: "A retry with the same key and the same request returns the stored
// response with Idempotent-Replayed: true". A stored 4xx answer (an insufficient-credits
// refusal) must come back as it was: same status, same bytes.
func TestReplayedRefusalIsTheStoredBytes(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, `{"amount":"1","source":"wallet"}`).status)
	body := `{"customer":"c","amount":"5"}`
	first := h.do("POST", "/v1/reservations", keyAcme, jsonCT, body, "Idempotency-Key", "rz-1")
	requireProblem(t, first, 409, "insufficient-credits")
	again := h.do("POST", "/v1/reservations", keyAcme, jsonCT, body, "Idempotency-Key", "rz-1")
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	assert.Equal(t, first.status, again.status)
	assert.Equal(t, first.raw, again.raw, "the replay is not the stored response byte for byte")
}

// The same for a 201 whose JSON holds characters encoding/json would escape for HTML.
func TestReplayedAnswerIsTheStoredBytes(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/a&b%3Cc%3E/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`).status)
	body := `{"customer":"a&b<c>","amount":"5"}`
	first := h.do("POST", "/v1/reservations", keyAcme, jsonCT, body, "Idempotency-Key", "rz-2")
	require.Equal(t, 201, first.status, first.raw)
	again := h.do("POST", "/v1/reservations", keyAcme, jsonCT, body, "Idempotency-Key", "rz-2")
	require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	assert.Equal(t, first.status, again.status)
	assert.Equal(t, first.raw, again.raw, "the replay is not the stored response byte for byte")
}

// Records keep the answer twice: exactly (answer) and as JSON (body), the way the version
// before kept it, so that during a rolling upgrade an older process still replays a newer
// record; a record with only body (stored by the older version) replays that body.
func TestIdempotencyRecordsOfBothVersionsReplay(t *testing.T) {
	h := newHarness(t)
	grant := `{"amount":"5","source":"topup"}`
	first := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "v-1")
	require.Equal(t, 201, first.status, first.raw)
	sum := sha256.Sum256([]byte("acme/test\x00v-1"))
	kvKey := hex.EncodeToString(sum[:])
	e, err := h.idem.Get(context.Background(), kvKey)
	require.NoError(t, err)
	var rec map[string]any
	require.NoError(t, json.Unmarshal(e.Value(), &rec))
	require.NotEmpty(t, rec["answer"])
	require.NotEmpty(t, rec["body"], "an older process reads body")

	delete(rec, "answer") // as the older version stored it
	b, _ := json.Marshal(rec)
	_, err = h.idem.Put(context.Background(), kvKey, b)
	require.NoError(t, err)
	again := h.do("POST", "/v1/customers/c/grants", keyAcme, jsonCT, grant, "Idempotency-Key", "v-1")
	require.Equal(t, 201, again.status, again.raw)
	assert.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
	assert.JSONEq(t, first.raw, again.raw)
}
