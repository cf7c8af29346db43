package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api"
	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/ingest"
	"github.com/allot-dev/allot/projector"
)

const (
	keyAcme      = "ak_test_acme_admin_key_1"
	keyAcmeUser  = "ak_test_acme_plain_key_2"
	keyGlobex    = "ak_test_globex_key_3"
	keyAcmeLive  = "ak_live_acme_key_4"
	maxBodyBytes = 64 << 10
)

type harness struct {
	t       testing.TB
	url     string
	handler http.Handler
	js      jetstream.JetStream
	cat     *catalog.Catalog
	idem    jetstream.KeyValue
}

// newHarness runs the API on a real embedded NATS server (in-process connection).
func newHarness(t testing.TB) *harness { return newHarnessWith(t, nil) }

func newHarnessWith(t testing.TB, tweak func(*api.Options)) *harness {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: t.TempDir(), Port: -2})
	require.NoError(t, err)
	t.Cleanup(emb.Shutdown)
	nc, err := nats.Connect("", nats.InProcessServer(emb.Server))
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	require.NoError(t, bus.EnsureStreams(ctx, js, bus.StreamOptions{}))
	cat := catalog.New()
	f := catalog.NewFollower(js, bus.ConfigStream, cat, slog.New(slog.DiscardHandler))
	go f.Run(ctx)
	require.NoError(t, f.Sync(ctx))
	_, err = catalog.Bootstrap(ctx, js, cat, catalog.File{
		Keys: []catalog.FileKey{
			{Key: keyAcme, Product: "acme", Env: "test", Admin: true},
			{Key: keyAcmeUser, Product: "acme", Env: "test"},
			{Key: keyGlobex, Product: "globex", Env: "test", Admin: true},
			{Key: keyAcmeLive, Product: "acme", Env: "live", Admin: true},
		},
		Meters: nil,
	}, time.Now())
	require.NoError(t, err)
	m, fe := catalog.ValidateMeter(events.Meter{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"})
	require.Nil(t, fe)
	_, err = catalog.PutMeter(ctx, js, cat, events.Scope{Product: "acme", Env: "test"}, m, time.Now())
	require.NoError(t, err)
	in := ingest.New(js, bus.UsageStream, cat, nil)
	ledger := projector.NewLedger()
	in.Customers = ledger
	go projector.Follow(ctx, js, bus.LedgerStream, ledger, slog.New(slog.DiscardHandler))
	idem, err := bus.EnsureIdempotencyStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	notified, err := bus.EnsureNotifiedStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	opts := api.Options{Catalog: cat, NC: nc, JS: js, Ingester: in, Ledger: ledger, Idempotency: idem, Notified: notified, MaxBody: maxBodyBytes}
	if tweak != nil {
		tweak(&opts)
	}
	handler := api.New(opts).Handler()
	srv := httptest.NewServer(handler)
	t.Cleanup(srv.Close)
	return &harness{t: t, url: srv.URL, handler: handler, js: js, cat: cat, idem: idem}
}

type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (h *harness) do(method, path, key, contentType, body string, headers ...string) reply {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, strings.NewReader(body))
	require.NoError(h.t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// concurrently sends the same request n times, 64 at a time, and counts the answers by status.
func (h *harness) concurrently(n int, method, path, body string) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			r := h.do(method, path, keyAcme, jsonCT, body)
			mu.Lock()
			codes[r.status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}

func (h *harness) usageCount() uint64 {
	h.t.Helper()
	s, err := h.js.Stream(context.Background(), bus.UsageStream)
	require.NoError(h.t, err)
	info, err := s.Info(context.Background())
	require.NoError(h.t, err)
	return info.State.Msgs
}

func requireProblem(t *testing.T, r reply, status int, kind string) {
	t.Helper()
	require.Equal(t, status, r.status, r.raw)
	assert.Equal(t, problem.ContentType, r.header.Get("Content-Type"))
	assert.Equal(t, problem.TypeBase+kind, r.body["type"], r.raw)
	assert.EqualValues(t, status, r.body["status"])
	assert.Equal(t, problem.Title(kind), r.body["title"], "a type's title is fixed (docs/errors.md)")
}

func TestIngestRoundTrip(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/events", keyAcme, "application/json",
		`[{"id":"e1","type":"llm","customer":"c1","data":{"tokens":"10.5"}},{"id":"e2","type":"llm","customer":"user@example.com","data":{"tokens":2}}]`)
	require.Equal(t, 202, r.status, r.raw)
	assert.EqualValues(t, 2, r.body["accepted"])
	assert.EqualValues(t, 0, r.body["duplicates"])
	assert.Empty(t, r.body["rejected"])
	require.EqualValues(t, 2, h.usageCount())

	// The event is on its customer's partitioned subject, exactly as encoded.
	s, err := h.js.Stream(context.Background(), bus.UsageStream)
	require.NoError(t, err)
	m, err := s.GetMsg(context.Background(), 2)
	require.NoError(t, err)
	addr, err := events.ParseUsageSubject(m.Subject)
	require.NoError(t, err)
	assert.Equal(t, events.UsageAddress{Product: "acme", Env: "test", Customer: "user@example.com", Partition: addr.Partition}, addr)
	assert.GreaterOrEqual(t, addr.Partition, 0)
	assert.Less(t, addr.Partition, 8)
	u, err := events.DecodeUsage(m.Data)
	require.NoError(t, err)
	assert.Equal(t, "e2", u.ID)
	assert.Equal(t, json.Number("2"), u.Data["tokens"])
	assert.Equal(t, events.TypeUsageRecorded, m.Header.Get(events.HeaderType))

	// Sending the same batch again stores nothing and counts duplicates.
	r = h.do("POST", "/v1/events", keyAcme, "application/json",
		`[{"id":"e1","type":"llm","customer":"c1","data":{"tokens":"10.5"}},{"id":"e2","type":"llm","customer":"user@example.com","data":{"tokens":2}}]`)
	require.Equal(t, 202, r.status, r.raw)
	assert.EqualValues(t, 0, r.body["accepted"])
	assert.EqualValues(t, 2, r.body["duplicates"])
	require.EqualValues(t, 2, h.usageCount())

	// The same id in another product is another event.
	r = h.do("POST", "/v1/events", keyGlobex, "application/json", `{"id":"e1","type":"llm","customer":"c1","data":{"tokens":"10.5"}}`)
	require.Equal(t, 202, r.status, r.raw)
	assert.EqualValues(t, 1, r.body["accepted"])
	require.EqualValues(t, 3, h.usageCount())

	// Reusing an id with another payload is a reported conflict; the first payload stands.
	r = h.do("POST", "/v1/events", keyAcme, "application/json", `[{"id":"e1","type":"llm","customer":"c1","data":{"tokens":"99"}},{"id":"e3","type":"llm","customer":"c1","data":{"tokens":1}}]`)
	require.Equal(t, 202, r.status, r.raw)
	assert.EqualValues(t, 1, r.body["accepted"])
	rej := r.body["rejected"].([]any)
	require.Len(t, rej, 1)
	assert.EqualValues(t, 0, rej[0].(map[string]any)["index"])
	assert.Equal(t, problem.TypeBase+problem.ConflictingDuplicate, rej[0].(map[string]any)["problem"].(map[string]any)["type"])
	require.EqualValues(t, 4, h.usageCount())
}

func TestBadInputStoresNothing(t *testing.T) {
	h := newHarness(t)
	big := `[` + strings.Repeat(`{"id":"x","type":"llm","customer":"c","data":{"tokens":1}},`, maxBodyBytes/50) + `{"id":"y","type":"t","customer":"c"}]`
	tests := []struct {
		name, key, ctype, body string
		status                 int
		kind                   string
	}{
		{"invalid JSON", keyAcme, "application/json", `[{"id":"a",`, 400, problem.InvalidJSON},
		{"missing id", keyAcme, "application/json", `{"type":"llm","customer":"c","data":{"tokens":1}}`, 400, problem.InvalidField},
		{"missing type", keyAcme, "application/json", `{"id":"a","customer":"c"}`, 400, problem.InvalidField},
		{"missing customer", keyAcme, "application/json", `{"id":"a","type":"llm","data":{"tokens":1}}`, 400, problem.InvalidField},
		{"wrong types", keyAcme, "application/json", `{"id":1,"type":"llm","customer":"c"}`, 400, problem.InvalidField},
		{"non-decimal quantity", keyAcme, "application/json", `{"id":"a","type":"llm","customer":"c","data":{"tokens":"1e"}}`, 400, problem.InvalidField},
		{"all of a batch bad", keyAcme, "application/json", `[{"id":"a","type":"llm","customer":"c","data":{"tokens":"x"}},{"id":"b"}]`, 400, problem.InvalidEvent},
		{"too large", keyAcme, "application/json", big, 413, problem.BodyTooLarge},
		{"unknown content type", keyAcme, "text/csv", "id,type\n", 415, problem.UnsupportedMediaType},
		{"no key", "", "application/json", `{"id":"a","type":"t","customer":"c"}`, 401, problem.Unauthenticated},
		{"wrong key", "ak_test_not_a_real_key", "application/json", `{"id":"a","type":"t","customer":"c"}`, 401, problem.Unauthenticated},
		{"key with a lying env prefix", strings.Replace(keyAcmeLive, "_live_", "_test_", 1), "application/json", `{"id":"a","type":"t","customer":"c"}`, 401, problem.Unauthenticated},
		{"another product's scope", keyGlobex, "application/json", `{"id":"a","type":"t","customer":"c","product":"acme"}`, 403, problem.Forbidden},
		{"another env's scope", keyAcmeLive, "application/json", `{"id":"a","type":"t","customer":"c","env":"test"}`, 403, problem.Forbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := h.usageCount()
			r := h.do("POST", "/v1/events", tt.key, tt.ctype, tt.body)
			requireProblem(t, r, tt.status, tt.kind)
			assert.Equal(t, before, h.usageCount(), "nothing may be stored")
		})
	}
	t.Run("field is named", func(t *testing.T) {
		r := h.do("POST", "/v1/events", keyAcme, "application/json", `{"id":"a","type":"llm","customer":"c","data":{"tokens":"1e"}}`)
		assert.Equal(t, "data.tokens", r.body["field"])
	})
}

func TestScopesAndMeters(t *testing.T) {
	h := newHarness(t)
	r := h.do("PUT", "/v1/meters/calls", keyAcme, "application/json", `{"event_type":"api.call","aggregation":"count"}`)
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "calls", r.body["key"])

	r = h.do("GET", "/v1/meters/calls", keyAcmeUser, "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "api.call", r.body["event_type"])

	// Other product and other env see nothing of acme/test.
	requireProblem(t, h.do("GET", "/v1/meters/calls", keyGlobex, "", ""), 404, problem.NotFound)
	requireProblem(t, h.do("GET", "/v1/meters/calls", keyAcmeLive, "", ""), 404, problem.NotFound)
	r = h.do("GET", "/v1/meters", keyGlobex, "", "")
	require.Equal(t, 200, r.status)
	assert.Empty(t, r.body["data"])

	// A plain key cannot change configuration.
	requireProblem(t, h.do("PUT", "/v1/meters/calls", keyAcmeUser, "application/json", `{"event_type":"x","aggregation":"count"}`), 403, problem.Forbidden)
	// Bad definitions name their field.
	r = h.do("PUT", "/v1/meters/m2", keyAcme, "application/json", `{"event_type":"x","aggregation":"avg"}`)
	requireProblem(t, r, 422, problem.InvalidField)
	assert.Equal(t, "aggregation", r.body["field"])
	r = h.do("PUT", "/v1/meters/m2", keyAcme, "application/json", `{"event_type":"x","aggregation":"sum"}`)
	requireProblem(t, r, 422, problem.InvalidField)
	assert.Equal(t, "value_property", r.body["field"])
	r = h.do("PUT", "/v1/meters/m2", keyAcme, "application/json", `{"event_type":"x","aggregation":"count","colour":1}`)
	requireProblem(t, r, 400, problem.InvalidField)
	assert.Equal(t, "colour", r.body["field"], "an unknown field is named")
	requireProblem(t, h.do("PUT", "/v1/meters/bad%20key", keyAcme, "application/json", `{"event_type":"x","aggregation":"count"}`), 422, problem.InvalidField)

	// The new meter now validates events: an api.call needs nothing, so it is accepted.
	r = h.do("POST", "/v1/events", keyAcme, "application/json", `{"id":"a1","type":"api.call","customer":"c"}`)
	require.Equal(t, 202, r.status, r.raw)
	// Unknown routes and methods are problems too.
	requireProblem(t, h.do("GET", "/v1/nothing", keyAcme, "", ""), 404, problem.NotFound)
	r = h.do("DELETE", "/v1/events", keyAcme, "", "")
	requireProblem(t, r, 405, problem.MethodNotAllowed)
	assert.Equal(t, "POST", r.header.Get("Allow"))
}

func TestOperationalEndpoints(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/healthz", "", "", "")
	require.Equal(t, 200, r.status)
	r = h.do("GET", "/readyz", "", "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "ok", r.body["checks"].(map[string]any)["nats"])
	h.do("POST", "/v1/events", keyAcme, "application/json", `{"id":"a1","type":"t","customer":"c"}`)
	r = h.do("GET", "/metrics", "", "", "")
	require.Equal(t, 200, r.status)
	assert.Contains(t, r.raw, `allot_http_request_duration_seconds_count{route="/v1/events"} 1`)
}

func TestCloudEventsStructuredAndBinary(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/events", keyAcme, "application/cloudevents+json",
		`{"specversion":"1.0","id":"ce1","source":"/svc","type":"llm","subject":"c1","data":{"tokens":4}}`)
	require.Equal(t, 202, r.status, r.raw)
	req, _ := http.NewRequest("POST", h.url+"/v1/events", bytes.NewReader([]byte(`{"tokens":5}`)))
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	req.Header.Set("Content-Type", "application/json")
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": "ce2", "ce-source": "/svc", "ce-type": "llm", "ce-subject": "c1"} {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode)
	require.EqualValues(t, 2, h.usageCount())
}

func TestRuleValidationNamesTheField(t *testing.T) {
	h := newHarness(t)
	tests := []struct{ name, body, field string }{
		{"unknown meter", `{"meter":"nope","model":"flat","price":"1"}`, "meter"},
		{"no meter", `{"model":"flat","price":"1"}`, "meter"},
		{"unknown model", `{"meter":"tokens","model":"tiered"}`, "model"},
		{"negative price", `{"meter":"tokens","model":"per_unit","price":"-0.1"}`, "price"},
		{"flat without price", `{"meter":"tokens","model":"flat"}`, "price"},
		{"zero package", `{"meter":"tokens","model":"per_unit","price":"1","package_size":0}`, "package_size"},
		{"no tiers", `{"meter":"tokens","model":"graduated"}`, "tiers"},
		{"no open last tier", `{"meter":"tokens","model":"graduated","tiers":[{"up_to":10,"unit_price":1},{"up_to":20,"unit_price":0.5}]}`, "tiers[1].up_to"},
		{"open tier in the middle", `{"meter":"tokens","model":"volume","tiers":[{"unit_price":1},{"unit_price":0.5}]}`, "tiers[0].up_to"},
		{"unsorted tiers", `{"meter":"tokens","model":"graduated","tiers":[{"up_to":20,"unit_price":1},{"up_to":10,"unit_price":0.5},{"unit_price":0.1}]}`, "tiers[1].up_to"},
		{"overlapping tiers", `{"meter":"tokens","model":"graduated","tiers":[{"up_to":10,"unit_price":1},{"up_to":10,"unit_price":0.5},{"unit_price":0.1}]}`, "tiers[1].up_to"},
		{"negative tier price", `{"meter":"tokens","model":"volume","tiers":[{"up_to":10,"unit_price":-1},{"unit_price":0.1}]}`, "tiers[0].unit_price"},
		{"negative flat fee", `{"meter":"tokens","model":"volume","tiers":[{"up_to":10,"unit_price":1,"flat_fee":"-2"},{"unit_price":0.1}]}`, "tiers[0].flat_fee"},
		{"zero bound", `{"meter":"tokens","model":"volume","tiers":[{"up_to":0,"unit_price":1},{"unit_price":0.1}]}`, "tiers[0].up_to"},
		{"bad scope", `{"meter":"tokens","model":"volume","tier_scope":"day","tiers":[{"unit_price":0.1}]}`, "tier_scope"},
		{"bad period", `{"meter":"tokens","model":"volume","period":{"unit":"fortnight"},"tiers":[{"unit_price":0.1}]}`, "period.unit"},
		{"bad zone", `{"meter":"tokens","model":"volume","period":{"unit":"day","time_zone":"Nowhere/Land"},"tiers":[{"unit_price":0.1}]}`, "period.time_zone"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", tt.body)
			requireProblem(t, r, 422, problem.InvalidField)
			assert.Equal(t, tt.field, r.body["field"], r.raw)
		})
	}
	r := h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"tokens","model":"per_unit","price":"not a number"}`)
	requireProblem(t, r, 400, problem.InvalidField)
	assert.Equal(t, "price", r.body["field"], r.raw)
	r = h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"tokens","model":"graduated","tiers":[{"unit_price":"x"}]}`)
	requireProblem(t, r, 400, problem.InvalidField)
	assert.Equal(t, "tiers", r.body["field"], r.raw)
	requireProblem(t, h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"tokens",`), 400, problem.InvalidJSON)
	requireProblem(t, h.do("GET", "/v1/rules/r1", keyAcme, "", ""), 404, problem.NotFound)

	// Valid PUTs create versions 1 and 2; other products cannot see them.
	r = h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"tokens","model":"graduated","tiers":[{"up_to":"100","unit_price":"1.00"},{"up_to":200,"unit_price":0.5},{"unit_price":"0.10"}]}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.EqualValues(t, 1, r.body["version"])
	r = h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"tokens","model":"flat","price":"0.25","effective_from":"2030-01-01T00:00:00Z"}`)
	require.Equal(t, 201, r.status, r.raw)
	assert.EqualValues(t, 2, r.body["version"])
	r = h.do("GET", "/v1/rules/r1", keyAcmeUser, "", "")
	require.Equal(t, 200, r.status)
	assert.Len(t, r.body["versions"], 2)
	assert.EqualValues(t, 2, r.body["latest_version"])
	requireProblem(t, h.do("GET", "/v1/rules/r1", keyGlobex, "", ""), 404, problem.NotFound)
	requireProblem(t, h.do("PUT", "/v1/rules/r1", keyAcmeUser, "application/json", `{"meter":"tokens","model":"flat","price":"1"}`), 403, problem.Forbidden)
	// A rule never changes meter.
	h.do("PUT", "/v1/meters/calls", keyAcme, "application/json", `{"event_type":"llm","aggregation":"count"}`)
	r = h.do("PUT", "/v1/rules/r1", keyAcme, "application/json", `{"meter":"calls","model":"flat","price":"1"}`)
	requireProblem(t, r, 422, problem.InvalidField)
	assert.Equal(t, "meter", r.body["field"])
}

func TestConcurrentRulePutsGetDistinctVersions(t *testing.T) {
	h := newHarness(t)
	const n = 12
	results := make(chan reply, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			results <- h.do("PUT", "/v1/rules/r", keyAcme, "application/json", fmt.Sprintf(`{"meter":"tokens","model":"flat","price":"%d"}`, i+1))
		}(i)
	}
	seen := map[float64]bool{}
	for i := 0; i < n; i++ {
		r := <-results
		require.Equal(t, 201, r.status, r.raw)
		v := r.body["version"].(float64)
		require.False(t, seen[v], "version %v given twice", v)
		seen[v] = true
	}
	r := h.do("GET", "/v1/rules/r", keyAcme, "", "")
	assert.Len(t, r.body["versions"], n)
}

func TestLedgerEndpointsValidateInput(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/v1/customers/nobody/balance", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Equal(t, "0", r.body["balance"])
	r = h.do("GET", "/v1/customers/nobody/ledger", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	assert.Empty(t, r.body["data"])
	assert.Nil(t, r.body["next_cursor"])
	requireProblem(t, h.do("GET", "/v1/customers/c/ledger?limit=0", keyAcme, "", ""), 400, problem.InvalidField)
	requireProblem(t, h.do("GET", "/v1/customers/c/ledger?limit=9999", keyAcme, "", ""), 400, problem.InvalidField)
	requireProblem(t, h.do("GET", "/v1/customers/c/ledger?cursor=abc", keyAcme, "", ""), 400, problem.InvalidField)
}

// A re-rate after a crash, with a rule added meanwhile, writes event 10's debits again at
// other positions: the ledger shows each rule's debit of an event once, on one page or across
// pages (the cursor carries the rules already shown).
func TestLedgerShowsEachRulesDebitOnce(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	subj := events.LedgerSubject("acme", "test", "c1")
	write := func(debits ...events.UsageDebited) {
		for i := range debits {
			debits[i].Customer, debits[i].RuleIndex, debits[i].Amount = "c1", i, events.MicroPerCredit
			debits[i].ID = fmt.Sprintf("dbt_%d_%s", debits[i].UsageSeq, debits[i].Rule)
		}
		b, err := json.Marshal(events.UsageRated{Customer: "c1", Debits: debits})
		require.NoError(t, err)
		_, err = h.js.PublishMsg(ctx, &nats.Msg{Subject: subj, Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeUsageRated}}})
		require.NoError(t, err)
	}
	write(events.UsageDebited{UsageSeq: 10, Rule: "price"})
	write(events.UsageDebited{UsageSeq: 10, Rule: "a-price"}, events.UsageDebited{UsageSeq: 10, Rule: "price"})
	write(events.UsageDebited{UsageSeq: 11, Rule: "a-price"}, events.UsageDebited{UsageSeq: 11, Rule: "price"})
	want := []string{"dbt_10_price", "dbt_10_a-price", "dbt_11_a-price", "dbt_11_price"}
	for _, limit := range []int{50, 1} {
		var ids []string
		cursor := ""
		for page := 0; page < 10; page++ {
			r := h.do("GET", fmt.Sprintf("/v1/customers/c1/ledger?limit=%d&cursor=%s", limit, cursor), keyAcme, "", "")
			require.Equal(t, 200, r.status, r.raw)
			for _, e := range r.body["data"].([]any) {
				ids = append(ids, e.(map[string]any)["entry"].(map[string]any)["id"].(string))
			}
			next, _ := r.body["next_cursor"].(string)
			if next == "" {
				break
			}
			cursor = next
		}
		assert.Equal(t, want, ids, "limit %d", limit)
	}
}

// A usage debit in the ledger lists the blocks it burned (API.md), as the balance's fold
// allocated them — rating writes the debit without them.
func TestLedgerDebitsListTheirAllocations(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	g := h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"3","source":"promo"}`)
	require.Equal(t, 201, g.status, g.raw)
	promo := g.body["id"].(string)
	require.Equal(t, 201, h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"10","source":"wallet"}`).status)
	b, err := json.Marshal(events.UsageRated{Customer: "c1", Debits: []events.UsageDebited{
		{ID: "dbt_1", Customer: "c1", Rule: "r", UsageSeq: 1, Amount: 5 * events.MicroPerCredit, EventTime: time.Now().UTC()}}})
	require.NoError(t, err)
	_, err = h.js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", "c1"), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeUsageRated}}})
	require.NoError(t, err)
	r := h.do("GET", "/v1/customers/c1/ledger", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	data := r.body["data"].([]any)
	require.Len(t, data, 3, r.raw)
	debit := data[2].(map[string]any)
	assert.Equal(t, events.TypeUsageDebited, debit["type"])
	allocs := debit["entry"].(map[string]any)["allocations"].([]any)
	require.Len(t, allocs, 2, r.raw)
	assert.Equal(t, map[string]any{"block": promo, "amount": "3"}, allocs[0], "promo burns before the wallet")
	assert.Equal(t, "2", allocs[1].(map[string]any)["amount"])
	assert.Equal(t, "dbt_1", debit["entry"].(map[string]any)["id"])
}

// Holds made together are written together (reservations.created.v1); the ledger still shows
// each as a reservation.created.v1 entry of its own.
func TestLedgerShowsBatchedHoldsOneByOne(t *testing.T) {
	h := newHarness(t)
	require.Equal(t, 201, h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"100","source":"wallet"}`).status)
	var wg sync.WaitGroup
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := h.do("POST", "/v1/reservations", keyAcme, jsonCT, `{"customer":"c1","amount":"1"}`)
			assert.Equal(t, 201, r.status, r.raw)
		}()
	}
	wg.Wait()
	assert.Equal(t, "40", h.do("GET", "/v1/customers/c1/balance", keyAcme, "", "").body["reserved"])
	r := h.do("GET", "/v1/customers/c1/ledger?limit=500", keyAcme, "", "")
	require.Equal(t, 200, r.status, r.raw)
	holds, seqs := 0, map[any]bool{}
	for _, e := range r.body["data"].([]any) {
		if e.(map[string]any)["type"] == events.TypeReservationCreated {
			holds++
			seqs[e.(map[string]any)["seq"]] = true
		}
	}
	assert.Equal(t, 40, holds)
	t.Logf("40 holds in %d ledger entries", len(seqs))
}

// Paging through a long ledger folds on from where the previous page ended (a checkpoint of
// the fold before the entry the page ended in) rather than from the customer's first entry
// every time, and shows exactly what one big page shows, allocations included.
func TestLedgerPagesFoldOnFromWhereTheLastEnded(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	require.Equal(t, 201, h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"50","source":"promo"}`).status)
	require.Equal(t, 201, h.do("POST", "/v1/customers/c1/grants", keyAcme, jsonCT, `{"amount":"1000","source":"wallet"}`).status)
	const entries = 60
	for i := 0; i < entries; i++ {
		for _, c := range []string{"c1", "other"} {
			b, err := json.Marshal(events.UsageRated{Customer: c, Debits: []events.UsageDebited{
				{ID: fmt.Sprintf("dbt_%d_a", i), Customer: c, Rule: "r", UsageSeq: uint64(i + 1), Amount: events.MicroPerCredit, EventTime: time.Now().UTC()},
				{ID: fmt.Sprintf("dbt_%d_b", i), Customer: c, Rule: "s", RuleIndex: 1, UsageSeq: uint64(i + 1), Amount: 2 * events.MicroPerCredit, EventTime: time.Now().UTC()}}})
			require.NoError(t, err)
			_, err = h.js.PublishMsg(ctx, &nats.Msg{Subject: events.LedgerSubject("acme", "test", c), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeUsageRated}}})
			require.NoError(t, err)
		}
	}
	read := func() int {
		r := h.do("GET", "/metrics", keyAcme, "", "")
		for _, line := range strings.Split(r.raw, "\n") {
			if v, ok := strings.CutPrefix(line, "allot_ledger_api_entries_read_total "); ok {
				n, _ := strconv.Atoi(v)
				return n
			}
		}
		t.Fatalf("no allot_ledger_api_entries_read_total in\n%s", r.raw)
		return 0
	}
	whole := h.do("GET", "/v1/customers/c1/ledger?limit=500", keyAcme, "", "")
	require.Equal(t, 200, whole.status, whole.raw)
	want := whole.body["data"].([]any)
	require.Len(t, want, 2+2*entries)

	before := read()
	var got []any
	cursor, pages := "", 0
	for ; pages < 100; pages++ {
		r := h.do("GET", "/v1/customers/c1/ledger?limit=3&cursor="+cursor, keyAcme, "", "")
		require.Equal(t, 200, r.status, r.raw)
		got = append(got, r.body["data"].([]any)...)
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	assert.Equal(t, want, got, "pages of 3 show what one page of 500 shows")
	// Each page reads the entries it shows and the one it ended in: about entries + pages in
	// all, where folding from the first entry each time read ~entries×pages/2 (~1,200).
	assert.LessOrEqual(t, read()-before, 2+entries+2*(pages+1), "%d pages", pages+1)
}
