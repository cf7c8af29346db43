package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bench-load sends exactly the requests its spec describes — each template in turn, {n}
// filled with i%spread — and times every one.
func TestBenchLoadSendsTheSpec(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		seen[r.Method+" "+r.URL.String()+" "+string(body)+" "+r.Header.Get("Authorization")]++
		mu.Unlock()
		w.WriteHeader(200)
	}))
	defer srv.Close()
	spec := loadSpec{Base: srv.URL, Auth: "Bearer k", Spread: 3, Total: 12, Conc: 4, Rate: 2000, Requests: []loadRequest{
		{Method: "GET", Path: "/a/c{n}/x", Want: 200},
		{Method: "POST", Path: "/b", Body: `{"customer":"c{n}","n":"{n}"}`, Want: 200},
	}}
	in, err := json.Marshal(spec)
	require.NoError(t, err)
	var out bytes.Buffer
	require.NoError(t, cmdBenchLoad(context.Background(), bytes.NewReader(in), &out))
	var res loadResult
	require.NoError(t, json.Unmarshal(out.Bytes(), &res))
	assert.Len(t, res.Latencies, 12)
	assert.Positive(t, res.Rate)
	for i := 1; i < len(res.Latencies); i++ {
		assert.LessOrEqual(t, res.Latencies[i-1], res.Latencies[i], "sorted")
	}
	// i = 0..11: even i → GET with n = i%3 ∈ {0,2,1,0,2,1}; odd i → POST with {1,0,2,1,0,2}.
	assert.Equal(t, map[string]int{
		"GET /a/c0/x  Bearer k": 2, "GET /a/c1/x  Bearer k": 2, "GET /a/c2/x  Bearer k": 2,
		`POST /b {"customer":"c0","n":"0"} Bearer k`: 2, `POST /b {"customer":"c1","n":"1"} Bearer k`: 2, `POST /b {"customer":"c2","n":"2"} Bearer k`: 2,
	}, seen)

	// A status other than the one wanted fails the run.
	spec.Requests[0].Want = 201
	in, _ = json.Marshal(spec)
	err = cmdBenchLoad(context.Background(), bytes.NewReader(in), io.Discard)
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "answered 200, want 201"), err.Error())
}

// alternate's latencies are every round's, sorted together: a slow first round shows in p99.
func TestAlternateSortsEveryRoundTogether(t *testing.T) {
	var calls atomic.Int64
	slowFirstRound := func(int) error {
		if calls.Add(1) <= 50 {
			time.Sleep(2 * time.Millisecond)
		}
		return nil
	}
	bl, fl, _, _, err := alternate(context.Background(), 2, 1, 50, func(int) error { return nil }, slowFirstRound)
	require.NoError(t, err)
	require.Len(t, fl, 100)
	assert.True(t, slices.IsSorted(fl))
	assert.True(t, slices.IsSorted(bl))
	assert.GreaterOrEqual(t, pct(fl, .99), 2.0, "the first round's 2 ms requests are the slowest 50%%")
}
