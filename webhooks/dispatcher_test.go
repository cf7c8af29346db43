package webhooks

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// memEndpoints is the endpoints a dispatcher reads (the catalog, in allot), kept in memory.
type memEndpoints struct {
	mu  sync.Mutex
	eps map[string]events.WebhookEndpoint
}

func (s *memEndpoints) WebhookEndpoint(_ events.Scope, id string) (events.WebhookEndpoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ep, ok := s.eps[id]
	return ep, ok
}

func (s *memEndpoints) WebhookEndpoints(_ events.Scope) []events.WebhookEndpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []events.WebhookEndpoint
	for _, ep := range s.eps {
		out = append(out, ep)
	}
	return out
}

func (s *memEndpoints) DisableEndpoint(_ context.Context, _ events.Scope, id, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	ep := s.eps[id]
	ep.Disabled, ep.DisabledReason = true, reason
	s.eps[id] = ep
	return nil
}

type deliveryHit struct {
	ID, TS, Sig string
	Body        []byte
	Payload     map[string]any
}

type dispatchRig struct {
	d     *Dispatcher
	store *memEndpoints
	mu    sync.Mutex
	hits  []deliveryHit
	code  func(h deliveryHit) int
}

func newDispatchRig(t *testing.T, secret string, code func(h deliveryHit) int) *dispatchRig {
	t.Helper()
	f := newLedgerFixture(t)
	r := &dispatchRig{code: code}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		h := deliveryHit{ID: req.Header.Get("webhook-id"), TS: req.Header.Get("webhook-timestamp"), Sig: req.Header.Get("webhook-signature"), Body: b}
		_ = json.Unmarshal(b, &h.Payload)
		r.mu.Lock()
		r.hits = append(r.hits, h)
		r.mu.Unlock()
		w.WriteHeader(r.code(h))
	}))
	t.Cleanup(srv.Close)
	r.store = &memEndpoints{eps: map[string]events.WebhookEndpoint{
		"whe_1": {ID: "whe_1", URL: srv.URL, Events: []string{"*"}, Secrets: []events.WebhookSecret{{Secret: secret}}},
	}}
	r.d = &Dispatcher{JS: f.js, KV: f.kv, Endpoints: r.store, OutboxStream: bus.OutboxStream, AllowPrivate: true,
		Schedule: []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond, time.Millisecond},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.d.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func (r *dispatchRig) snapshot() []deliveryHit {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]deliveryHit(nil), r.hits...)
}

func publishNotice(t *testing.T, r *dispatchRig, id, customer string) {
	t.Helper()
	require.NoError(t, Publish(context.Background(), r.d.JS, events.Scope{Product: "acme", Env: "live"},
		events.Notification{ID: id, Type: events.HookCreditsGranted, Customer: customer, At: t0, Data: map[string]any{"n": id}}))
}

// An exhausted delivery is dead-lettered after 1 + 7 attempts and the customer's queue moves on;
// every attempt is signed per Standard Webhooks and carries the per-customer sequence number.
func TestDispatcherRetriesDeadLettersAndMovesOn(t *testing.T) {
	secret := NewSecret()
	r := newDispatchRig(t, secret, func(h deliveryHit) int {
		if h.ID == "msg_a" {
			return 500
		}
		return 204
	})
	publishNotice(t, r, "msg_a", "c1")
	publishNotice(t, r, "msg_b", "c1")
	require.Eventually(t, func() bool {
		hs := r.snapshot()
		return len(hs) > 0 && hs[len(hs)-1].ID == "msg_b"
	}, 20*time.Second, 20*time.Millisecond)
	hs := r.snapshot()
	require.Len(t, hs, 9, "8 attempts of msg_a then msg_b")
	for i, h := range hs {
		if i < 8 {
			assert.Equal(t, "msg_a", h.ID)
			assert.EqualValues(t, 1, h.Payload["sequence"])
		}
		require.NoError(t, Verify(secret, h.ID, h.TS, h.Sig, h.Body, time.Now(), time.Minute))
	}
	assert.EqualValues(t, 2, hs[8].Payload["sequence"])
	assert.EqualValues(t, 1, r.d.DeadLettered.Load())
}

// A 410 disables the endpoint and nothing more is delivered to it.
func TestDispatcher410Disables(t *testing.T) {
	r := newDispatchRig(t, NewSecret(), func(deliveryHit) int { return http.StatusGone })
	publishNotice(t, r, "msg_a", "c1")
	publishNotice(t, r, "msg_b", "c1")
	require.Eventually(t, func() bool {
		ep, _ := r.store.WebhookEndpoint(events.Scope{}, "whe_1")
		return ep.Disabled
	}, 10*time.Second, 20*time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	assert.Len(t, r.snapshot(), 1)
}

// Per-customer order: a customer's second notification waits for the first; another customer's
// queue does not.
func TestDispatcherOrderPerCustomer(t *testing.T) {
	var failA sync.Once
	failing := true
	var mu sync.Mutex
	r := newDispatchRig(t, NewSecret(), func(h deliveryHit) int {
		mu.Lock()
		defer mu.Unlock()
		if h.ID == "msg_a" && failing {
			failA.Do(func() {})
			failing = false
			return 503
		}
		return 200
	})
	publishNotice(t, r, "msg_a", "c1")
	publishNotice(t, r, "msg_b", "c1")
	publishNotice(t, r, "msg_c", "c2")
	require.Eventually(t, func() bool { return len(r.snapshot()) == 4 }, 10*time.Second, 10*time.Millisecond)
	var order []string
	seq := map[string]any{}
	for _, h := range r.snapshot() {
		order = append(order, h.ID)
		seq[h.ID] = h.Payload["sequence"]
	}
	ia, ib := -1, -1
	for i, id := range order {
		if id == "msg_a" {
			ia = i
		}
		if id == "msg_b" && ib < 0 {
			ib = i
		}
	}
	assert.Less(t, ia, ib, "msg_b after msg_a's successful retry: %v", order)
	assert.EqualValues(t, 1, seq["msg_a"])
	assert.EqualValues(t, 2, seq["msg_b"])
	assert.EqualValues(t, 1, seq["msg_c"])
}
