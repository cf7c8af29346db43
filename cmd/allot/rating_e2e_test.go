package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const ratingConfig = testConfig + `  calls:
    event_type: llm
    aggregation: count
rules:
  tokens-graduated:
    meter: tokens
    model: graduated
    effective_from: 2020-01-01T00:00:00Z
    tiers:
      - {up_to: 1000, unit_price: 0.001}
      - {up_to: 5000, unit_price: 0.0005}
      - {unit_price: 0.0001}
  calls-packaged:
    meter: calls
    model: per_unit
    price: 0.3
    package_size: 7
    effective_from: 2020-01-01T00:00:00Z
`

// graduatedRat is an independent implementation of the rule above, in exact rationals.
func graduatedRat(q *big.Rat) *big.Rat {
	tiers := []struct{ upTo, price string }{{"1000", "0.001"}, {"5000", "0.0005"}, {"", "0.0001"}}
	total, lower := new(big.Rat), new(big.Rat)
	for _, t := range tiers {
		if q.Cmp(lower) <= 0 {
			break
		}
		upper := new(big.Rat).Set(q)
		if t.upTo != "" {
			u, _ := new(big.Rat).SetString(t.upTo)
			if u.Cmp(q) < 0 {
				upper = u
			}
		}
		p, _ := new(big.Rat).SetString(t.price)
		total.Add(total, new(big.Rat).Mul(new(big.Rat).Sub(upper, lower), p))
		if t.upTo == "" {
			break
		}
		lower, _ = new(big.Rat).SetString(t.upTo)
	}
	return total
}

// microRound rounds credits to whole micro-credits, half up, as a decimal string.
func microRound(r *big.Rat) string {
	m := new(big.Rat).Mul(r, big.NewRat(1_000_000, 1))
	m.Add(m, big.NewRat(1, 2))
	n := new(big.Int).Quo(m.Num(), m.Denom()) // floor for non-negative values
	s := new(big.Rat).SetFrac(n, big.NewInt(1_000_000)).FloatString(6)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// TestRatingSurvivesSIGKILL streams events into a real `allot serve`, kills it with SIGKILL
// part way (rating still behind), restarts it, finishes, and compares every customer's debited
// total with an independent computation from the events that were acknowledged.
func TestRatingSurvivesSIGKILL(t *testing.T) {
	data := t.TempDir()
	cfg := writeConfigText(t, ratingConfig)
	rng := rand.New(rand.NewPCG(42, 7))
	const customers, batches, perBatch = 12, 30, 200
	type ev struct {
		ID, Customer, Tokens string
	}
	var all [][]ev
	for b := 0; b < batches; b++ {
		var batch []ev
		for i := 0; i < perBatch; i++ {
			batch = append(batch, ev{fmt.Sprintf("k-%d-%d", b, i), fmt.Sprintf("cust-%d", rng.IntN(customers)), fmt.Sprintf("%d.%03d", rng.IntN(90), rng.IntN(1000))})
		}
		all = append(all, batch)
	}
	body := func(batch []ev) string {
		var parts []string
		for _, e := range batch {
			parts = append(parts, fmt.Sprintf(`{"id":%q,"type":"llm","customer":%q,"time":"2026-05-10T10:00:00Z","data":{"tokens":%q}}`, e.ID, e.Customer, e.Tokens))
		}
		return "[" + strings.Join(parts, ",") + "]"
	}
	// The first process never snapshots its rating state, so everything it rated (and wrote)
	// is rated and written again after the kill: the readers' dedupe is what keeps totals right.
	p := startServe(t, data, "--config", cfg, "--snapshot-every", "1h")
	half := batches / 2
	for b := 0; b < half; b++ {
		status, res := p.post("/v1/events", "application/json", body(all[b]))
		require.Equal(t, 202, status, res)
	}
	require.Eventually(t, func() bool {
		return metricSum(t, p.httpURL, "allot_rating_events_total") >= float64((half-2)*perBatch)
	}, 30*time.Second, 20*time.Millisecond, "rating wrote debits before the kill")
	require.Equal(t, -1, p.stop(syscall.SIGKILL))

	p = startServe(t, data, "--config", cfg, "--snapshot-every", "100ms")
	// The last batch before the kill is sent again: it must count zero further times.
	for b := half - 1; b < batches; b++ {
		status, res := p.post("/v1/events", "application/json", body(all[b]))
		require.Equal(t, 202, status, res)
		if b == half-1 {
			require.EqualValues(t, perBatch, res["duplicates"])
		}
	}

	tokens := map[string]*big.Rat{}
	calls := map[string]int64{}
	for _, batch := range all {
		for _, e := range batch {
			q, _ := new(big.Rat).SetString(e.Tokens)
			if tokens[e.Customer] == nil {
				tokens[e.Customer] = new(big.Rat)
			}
			tokens[e.Customer].Add(tokens[e.Customer], q)
			calls[e.Customer]++
		}
	}
	want := map[string]string{}
	for c, q := range tokens {
		packages := (calls[c] + 6) / 7
		cost := new(big.Rat).Add(graduatedRat(q), new(big.Rat).Mul(big.NewRat(packages, 1), big.NewRat(3, 10)))
		want[c] = microRound(cost)
	}
	got := map[string]string{}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for c := range want {
			got[c] = debited(t, p.httpURL, c)
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Equal(t, want, got, "debited totals must equal the independent computation:\n%s", p.logs())
	// The restarted process rated every event again (from no snapshot), in batches.
	rated, fetched := metricSum(t, p.httpURL, "allot_rating_events_total"), metricSum(t, p.httpURL, "allot_rating_batches_total")
	assert.GreaterOrEqual(t, rated, float64(batches*perBatch))
	assert.Greater(t, fetched, 0.0)
	assert.LessOrEqual(t, fetched, rated)

	// And a clean restart changes nothing.
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	p = startServe(t, data, "--config", cfg)
	time.Sleep(500 * time.Millisecond)
	for c, w := range want {
		require.Equal(t, w, debited(t, p.httpURL, c), c)
	}
}

func debited(t *testing.T, base, customer string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/customers/"+customer+"/balance", nil)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out), string(b))
	s, _ := out["debited"].(string)
	return s
}

// metricSum adds up every series of a metric on a node's /metrics.
func metricSum(t *testing.T, base, name string) float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum, series := 0.0, 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		require.NoError(t, err, line)
		sum, series = sum+v, series+1
	}
	require.NotZero(t, series, "no %s on /metrics:\n%s", name, b)
	return sum
}
