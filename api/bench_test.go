package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps only the status, with a header map cleared per
// request (net/http gives each request a new one; the benchmarks count the handler's own
// allocations, not a new map's).
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }

// rewindBody is a request body that can be read again.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

// benchRequests serves requests straight to the API's handler (no network, no net/http
// server) and reports what each costs the handler: the allocations on the check path are
// what makes the collector run, and on two cores its work is the latency tail.
func benchRequests(b *testing.B, h *harness, method string, path func(i int) string, body func(i int) []byte, want int) {
	req, err := http.NewRequest(method, "http://allot"+path(0), nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+keyAcme)
	req.Header.Set("Content-Type", jsonCT)
	w := &discardWriter{h: http.Header{}}
	rb := &rewindBody{}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := *req
		u := *req.URL
		u.Path = path(i)
		r.URL = &u
		if body != nil {
			rb.Reset(body(i))
			r.Body, r.ContentLength = rb, int64(rb.Len())
		}
		clear(w.h)
		w.status = 0
		h.handler.ServeHTTP(w, &r)
		if w.status != want && !(want == 200 && w.status == 0) {
			b.Fatalf("%s %s answered %d, want %d", method, u.Path, w.status, want)
		}
	}
}

func checkHarness(b *testing.B) *harness {
	h := newHarness(b)
	for _, s := range []struct{ path, body string }{
		{"/v1/rules/tok", `{"meter":"tokens","model":"per_unit","price":"0.5","effective_from":"2020-01-01T00:00:00Z"}`},
		{"/v1/features/chat", `{"rule":"tok","overdraft_limit":"5"}`},
		{"/v1/quotas/bench", `{"meter":"requests","limit":"1000000000000","period":{"unit":"hour"}}`},
	} {
		if r := h.do("PUT", s.path, keyAcme, jsonCT, s.body); r.status/100 != 2 {
			b.Fatalf("PUT %s: %d %s", s.path, r.status, r.raw)
		}
	}
	for i := 0; i < 100; i++ {
		if r := h.do("POST", fmt.Sprintf("/v1/customers/c%d/grants", i), keyAcme, jsonCT, `{"amount":"1000000","source":"wallet"}`); r.status != 201 {
			b.Fatalf("grant: %d %s", r.status, r.raw)
		}
		if r := h.do("POST", "/v1/quotas/bench/increment", keyAcme, jsonCT, fmt.Sprintf(`{"customer":"c%d"}`, i)); r.status != 200 {
			b.Fatalf("increment: %d %s", r.status, r.raw)
		}
	}
	time.Sleep(100 * time.Millisecond)
	return h
}

func BenchmarkHandlers(b *testing.B) {
	h := checkHarness(b)
	fixed := func(p string) func(int) string { return func(int) string { return p } }
	b.Run("healthz", func(b *testing.B) { benchRequests(b, h, "GET", fixed("/healthz"), nil, 200) })
	b.Run("balance", func(b *testing.B) {
		benchRequests(b, h, "GET", func(i int) string { return fmt.Sprintf("/v1/customers/c%d/balance", i%100) }, nil, 200)
	})
	b.Run("entitlement_check", func(b *testing.B) {
		benchRequests(b, h, "POST", fixed("/v1/entitlements/check"), func(i int) []byte {
			return fmt.Appendf(nil, `{"customer":"c%d","feature":"chat","quantity":"100"}`, i%100)
		}, 200)
	})
	b.Run("quota_check", func(b *testing.B) {
		benchRequests(b, h, "POST", fixed("/v1/quotas/bench/check"), func(i int) []byte {
			return fmt.Appendf(nil, `{"customer":"c%d"}`, i%100)
		}, 200)
	})
}

// BenchmarkIncrementHandler is quota increments served straight to the handler by 16 callers
// over 100 customers, group committed on the lane: the handler's own cost with the lane and
// JetStream's, without a network or net/http's server.
func BenchmarkIncrementHandler(b *testing.B) {
	benchHandlerConcurrently(b, "/v1/quotas/bench/increment", 200, func(i int64) []byte {
		return fmt.Appendf(nil, `{"customer":"c%d"}`, i%100)
	})
}

// BenchmarkReserveHandler is reservations the same way: the handler's cost with the append,
// JetStream's, and the projection's following of its own appends.
func BenchmarkReserveHandler(b *testing.B) {
	benchHandlerConcurrently(b, "/v1/reservations", 201, func(i int64) []byte {
		return fmt.Appendf(nil, `{"customer":"c%d","amount":"1","ttl_seconds":2}`, i%100)
	})
}

// benchHandlerConcurrently POSTs body(i) to path straight to the handler from 16 callers,
// b.N times in all, each answer expected to be want.
func benchHandlerConcurrently(b *testing.B, path string, want int, body func(i int64) []byte) {
	h := checkHarness(b)
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := 0; c < 16; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := &discardWriter{h: http.Header{}}
			rb := &rewindBody{}
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				req, _ := http.NewRequest("POST", "http://allot"+path, nil)
				req.Header.Set("Authorization", "Bearer "+keyAcme)
				req.Header.Set("Content-Type", jsonCT)
				rb.Reset(body(i))
				req.Body, req.ContentLength = rb, int64(rb.Len())
				clear(w.h)
				w.status = 0
				h.handler.ServeHTTP(w, req)
				if w.status != 0 && w.status != want {
					b.Errorf("%s answered %d", path, w.status)
					return
				}
			}
		}()
	}
	wg.Wait()
}
