package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// allot's own per-key request limit (429 marked "limit-scope": "api-key") is retried after
// its Retry-After within Patience, and what is left is ErrKeyRateLimited, never
// ErrQuotaExceeded: a balance read refused by it read as a quota's refusal.
func TestKeyRateLimitIsRetriedAndNotAQuota(t *testing.T) {
	calls := 0
	limited := func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","title":"Quota exceeded","status":429,"violated-policies":["api"],"limit-scope":"api-key"}`))
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		if calls == 1 || r.URL.Path == "/v1/customers/always/balance" {
			limited(w)
			return
		}
		w.Write([]byte(`{"customer":"c1","balance":"10"}`))
	}))
	defer srv.Close()
	c := New(srv.URL, "k")
	b, err := c.Balance(context.Background(), "c1")
	if err != nil || b.Balance != "10" || calls != 2 {
		t.Fatalf("not retried after Retry-After: calls %d, err %v", calls, err)
	}
	c.Patience, c.Retries = 1500*time.Millisecond, 0
	_, err = c.Balance(context.Background(), "always")
	if !errors.Is(err, ErrKeyRateLimited) || errors.Is(err, ErrQuotaExceeded) {
		t.Errorf("the per-key limit, past Patience: %v (ErrKeyRateLimited %v, ErrQuotaExceeded %v)", err, errors.Is(err, ErrKeyRateLimited), errors.Is(err, ErrQuotaExceeded))
	}
}

// A quota's own refusal is still ErrQuotaExceeded, and not retried.
func TestQuotaRefusalIsErrQuotaExceeded(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.Header().Set("Retry-After", "1")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","status":429,"violated-policies":["chat"]}`))
	}))
	defer srv.Close()
	_, err := New(srv.URL, "k").QuotaIncrement(context.Background(), "chat", "c1", "")
	if !errors.Is(err, ErrQuotaExceeded) || errors.Is(err, ErrKeyRateLimited) || calls != 1 {
		t.Errorf("quota refusal: %v after %d calls", err, calls)
	}
}

// A TTL is sent in whole seconds, rounded up: 500ms was sent as 0 and refused.
func TestReserveTTLRoundsUp(t *testing.T) {
	var got []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b struct {
			TTL int `json:"ttl_seconds"`
		}
		json.NewDecoder(r.Body).Decode(&b)
		got = append(got, b.TTL)
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":"res_1"}`))
	}))
	defer srv.Close()
	c := New(srv.URL, "k")
	for _, ttl := range []time.Duration{500 * time.Millisecond, 1900 * time.Millisecond, 60 * time.Second} {
		if _, err := c.Reserve(context.Background(), "c1", "5", ttl); err != nil {
			t.Fatal(err)
		}
	}
	if want := []int{1, 2, 60}; len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("ttl_seconds %v, want %v", got, want)
	}
}

// A caller's deadline before the per-key limit's Retry-After: the problem at once, not a wait
// that ends in context.DeadlineExceeded.
func TestKeyRateLimitWithinACallersDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "20")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"type":"https://allot.dev/problems/quota-exceeded","status":429,"limit-scope":"api-key"}`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := New(srv.URL, "k").Balance(ctx, "c1")
	if !errors.Is(err, ErrKeyRateLimited) {
		t.Errorf("%v", err)
	}
}
