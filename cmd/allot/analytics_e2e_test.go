package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/analytics"
)

// testDatabase returns a DSN for a database of this test's own on the suite's ClickHouse.
func testDatabase(t *testing.T, base string) string {
	t.Helper()
	u, err := url.Parse(base)
	require.NoError(t, err)
	u.Path = "/" + fmt.Sprintf("allot_%s_%d", strings.ToLower(regexp.MustCompile(`[^A-Za-z0-9]`).ReplaceAllString(t.Name(), "_")), rand.IntN(1_000_000))
	return u.String()
}

func chConn(t *testing.T, dsn string) driver.Conn {
	t.Helper()
	c, err := analytics.Open(context.Background(), dsn)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// chUintSoon is chUint for a poll: allot creates the tables in the background once
// ClickHouse answers, so a query may come before them; that is "not yet", not a failure.
func chUintSoon(c driver.Conn, q string) uint64 {
	var v uint64
	if err := c.QueryRow(context.Background(), q).Scan(&v); err != nil {
		return 0
	}
	return v
}

func chUint(t *testing.T, c driver.Conn, q string) uint64 {
	t.Helper()
	var v uint64
	require.NoError(t, c.QueryRow(context.Background(), q).Scan(&v), q)
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(100 * time.Millisecond)
	}
}

const analyticsConfig = `keys:
  - {key: ` + testKey + `, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
  calls: {event_type: llm, aggregation: count}
  logins: {event_type: login, aggregation: count}
  peak: {event_type: llm, aggregation: max, value_property: tokens}
  last: {event_type: llm, aggregation: latest, value_property: tokens}
  users: {event_type: signin, aggregation: unique_count, value_property: user}
rules:
  price: {meter: tokens, model: graduated, effective_from: 2020-01-01T00:00:00Z, tiers: [{up_to: 100, unit_price: 0.01}, {unit_price: 0.005}]}
quotas:
  daily-calls: {meter: calls, limit: 1000000, period: {unit: day}}
  api: {meter: requests, limit: 1000, period: {unit: hour}}
`

func TestAnalyticsGuideQueries(t *testing.T) {
	dsn := testDatabase(t, clickhouseDSN(t))
	cfg := writeConfigText(t, analyticsConfig)
	p := startServe(t, t.TempDir(), "--config", cfg, "--clickhouse", dsn)
	for _, g := range []string{`{"amount":"5","source":"trial"}`, `{"amount":"20","source":"wallet"}`} {
		status, body, err := p.request("POST", "/v1/customers/alice/grants", g)
		require.NoError(t, err)
		require.Equal(t, 201, status, body)
	}
	var evs []string
	for i := 0; i < 300; i++ {
		cust := []string{"alice", "bob", "carol"}[i%3]
		evs = append(evs, fmt.Sprintf(`{"id":"a%d","type":"llm","customer":%q,"data":{"tokens":%d.25,"model":"m%d"}}`, i, cust, i%50, i%2))
	}
	evs = append(evs, `{"id":"l1","type":"login","customer":"bob"}`,
		`{"id":"s1","type":"signin","customer":"bob","data":{"user":"u1"}}`, `{"id":"s2","type":"signin","customer":"bob","data":{"user":"u2"}}`,
		`{"id":"s3","type":"signin","customer":"carol","data":{"user":"u1"}}`, `{"id":"s4","type":"signin","customer":"carol","data":{"user":7}}`,
		`{"id":"s5","type":"signin","customer":"carol","data":{"user":"7"}}`)
	status, res := p.post("/v1/events", "application/json", "["+strings.Join(evs, ",")+"]")
	require.Equal(t, 202, status, res)
	status, body, _ := p.request("POST", "/v1/reservations", `{"customer":"alice","amount":"1"}`)
	require.Equal(t, 201, status, body)
	status, body, _ = p.request("POST", "/v1/reservations/"+body["id"].(string)+"/commit", `{"amount":"0.5"}`)
	require.Equal(t, 200, status, body)
	status, body, _ = p.request("POST", "/v1/quotas/api/increment", `{"customer":"bob","amount":3}`)
	require.Equal(t, 200, status, body)

	c := chConn(t, dsn)
	waitFor(t, 30*time.Second, "the sink", func() bool {
		return chUintSoon(c, "SELECT count() FROM usage_events") == 306 && chUintSoon(c, "SELECT count() FROM ledger_entries WHERE type = 'quota.incremented.v1'") == 1
	})

	// ClickHouse's per-customer totals equal the projector's.
	waitFor(t, 30*time.Second, "debits", func() bool {
		for _, cust := range []string{"alice", "bob", "carol"} {
			_, bal, _ := p.request("GET", "/v1/customers/"+cust+"/balance", "")
			var micro int64
			require.NoError(t, c.QueryRow(context.Background(), "SELECT sum(amount_micro) FROM ledger_entries WHERE customer = ? AND type = 'usage.debited.v1'", cust).Scan(&micro))
			if fmt.Sprint(bal["debited"]) != creditsText(micro) {
				return false
			}
		}
		return true
	})
	var overageCH int64
	require.NoError(t, c.QueryRow(context.Background(), "SELECT sum(amount_micro) FROM ledger_entries WHERE customer = 'bob' AND type = 'allocation' AND block = ''").Scan(&overageCH))
	_, bal, _ := p.request("GET", "/v1/customers/bob/balance", "")
	assert.Equal(t, bal["overage"], creditsText(overageCH), "bob has no blocks: all his debits are overage")

	// Every query of the analysts' guide runs as written and returns rows.
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "analytics.md"))
	require.NoError(t, err)
	queries := regexp.MustCompile("(?s)```sql\n(.*?)```").FindAllStringSubmatch(string(doc), -1)
	require.GreaterOrEqual(t, len(queries), 10)
	for i, q := range queries {
		rows, err := c.Query(context.Background(), q[1])
		require.NoError(t, err, "query %d:\n%s", i+1, q[1])
		n := 0
		for rows.Next() {
			n++
		}
		require.NoError(t, rows.Err())
		rows.Close()
		if !assert.Greater(t, n, 0, "query %d returned no rows:\n%s", i+1, q[1]) {
			var cnt, hourly uint64
			var minT, maxT, nowT time.Time
			_ = c.QueryRow(context.Background(), "SELECT count(), min(event_time), max(event_time), now() FROM usage_events").Scan(&cnt, &minT, &maxT, &nowT)
			_ = c.QueryRow(context.Background(), "SELECT count() FROM usage_hourly").Scan(&hourly)
			t.Logf("for the record: usage_events %d rows, event_time %s..%s, ClickHouse now %s; usage_hourly %d rows", cnt, minT, maxT, nowT, hourly)
		}
	}

	// The usage API answers from the same tables.
	status, body, _ = p.request("GET", "/v1/usage?meter=calls&window=day&group_by=customer", "")
	require.Equal(t, 200, status, body)
	data := body["data"].([]any)
	require.Len(t, data, 3)
	assert.Equal(t, "100", data[0].(map[string]any)["value"])
	assert.Nil(t, body["next_cursor"], "one page holds the whole answer")
	// Paged: two customers, then the third after the cursor, and no cursor after it.
	status, body, _ = p.request("GET", "/v1/usage?meter=calls&window=day&group_by=customer&limit=2", "")
	require.Equal(t, 200, status, body)
	require.Len(t, body["data"], 2, body)
	cursor, _ := body["next_cursor"].(string)
	require.NotEmpty(t, cursor, body)
	status, page, _ := p.request("GET", "/v1/usage?meter=calls&window=day&group_by=customer&limit=2&cursor="+cursor, "")
	require.Equal(t, 200, status, page)
	require.Len(t, page["data"], 1, page)
	assert.Nil(t, page["next_cursor"], page)
	assert.Equal(t, data[2], page["data"].([]any)[0], "the second page goes on where the first ended")
	status, page, _ = p.request("GET", "/v1/usage?meter=calls&window=hour&group_by=customer&cursor="+cursor, "")
	assert.Equal(t, 400, status, page)
	assert.Equal(t, "cursor", page["field"], "a cursor pages the query it came from")
	status, page, _ = p.request("GET", "/v1/usage?meter=calls&window=day&limit=0", "")
	assert.Equal(t, 400, status, page)
	assert.Equal(t, "limit", page["field"], page)
	status, body, _ = p.request("GET", "/v1/usage?meter=tokens&window=minute&group_by=model", "")
	require.Equal(t, 200, status, body)
	assert.NotEmpty(t, body["data"])
	status, _, _ = p.request("GET", "/v1/usage?meter=tokens&window=fortnight", "")
	assert.Equal(t, 400, status)
	status, _, _ = p.request("GET", "/v1/usage?meter=ghost&window=day", "")
	assert.Equal(t, 404, status)

	// Each meter's own aggregation: the largest value, the last one, the distinct ones.
	byCustomer := func(meter string) map[string]string {
		status, body, _ := p.request("GET", "/v1/usage?meter="+meter+"&window=month&group_by=customer", "")
		require.Equal(t, 200, status, body)
		out := map[string]string{}
		for _, row := range body["data"].([]any) {
			r := row.(map[string]any)
			out[r["customer"].(string)] = fmt.Sprint(r["value"])
		}
		return out
	}
	assert.Equal(t, map[string]string{"alice": "49.25", "bob": "49.25", "carol": "49.25"}, byCustomer("peak"))
	assert.Equal(t, map[string]string{"alice": "47.25", "bob": "48.25", "carol": "49.25"}, byCustomer("last"), "each customer's last event of the batch")
	assert.Equal(t, map[string]string{"bob": "2", "carol": "2"}, byCustomer("users"), `u1 and u2; u1 and 7 ("7" is 7)`)
	assert.Equal(t, map[string]string{"alice": "100", "bob": "100", "carol": "100"}, byCustomer("calls"), "count meters still add up (from the rollups)")
	// Distinct values grouped by another property: signins carry no "model", so one group.
	status, body, _ = p.request("GET", "/v1/usage?meter=users&window=month&group_by=model", "")
	require.Equal(t, 200, status, body)
	rows := body["data"].([]any)
	require.Len(t, rows, 1, body)
	assert.Equal(t, "3", fmt.Sprint(rows[0].(map[string]any)["value"]), "u1, u2 and 7 across customers")
}

func creditsText(micro int64) string {
	s := fmt.Sprintf("%d.%06d", micro/1_000_000, micro%1_000_000)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	return s
}

// A usage query that runs past --usage-query-timeout is stopped and answered 503 saying so
// (the API's HTTP fast path does not stop a handler whose caller hung up, so this bound is
// what ends a query nobody waits for).
func TestUsageQueryTimeout(t *testing.T) {
	dsn := testDatabase(t, clickhouseDSN(t))
	p := startServe(t, t.TempDir(), "--config", writeConfigText(t, analyticsConfig), "--clickhouse", dsn, "--usage-query-timeout", "1ns")
	status, body, err := p.request("GET", "/v1/usage?meter=tokens", "")
	require.NoError(t, err)
	assert.Equal(t, 503, status, body)
	assert.Equal(t, "Service unavailable", body["title"], body)
	assert.Contains(t, body["detail"], "ran longer than 1ns", body)
}

func TestUsageWithoutClickHouseIs503(t *testing.T) {
	p := startServe(t, t.TempDir(), "--config", writeConfig(t))
	status, body, err := p.request("GET", "/v1/usage?meter=tokens", "")
	require.NoError(t, err)
	assert.Equal(t, 503, status)
	assert.Equal(t, "https://allot.dev/problems/analytics-not-configured", body["type"])
	status, _, _ = p.request("GET", "/v1/customers/x/balance", "")
	assert.Equal(t, 200, status, "everything else keeps working")
}

// TestSinkSurvivesSIGKILL kills `allot serve` while the sink is writing, restarts it, and
// checks ClickHouse holds every acknowledged event exactly once.
func TestSinkSurvivesSIGKILL(t *testing.T) {
	dsn := testDatabase(t, clickhouseDSN(t))
	cfg := writeConfigText(t, analyticsConfig)
	data := t.TempDir()
	p := startServe(t, data, "--config", cfg, "--clickhouse", dsn)
	sent := 0
	want := map[string]int{}
	batch := func(b int) string {
		var evs []string
		for i := 0; i < 500; i++ {
			cust := fmt.Sprintf("k%d", (b*500+i)%7)
			want[cust] += i % 10
			evs = append(evs, fmt.Sprintf(`{"id":"s%d-%d","type":"llm","customer":%q,"data":{"tokens":%d}}`, b, i, cust, i%10))
		}
		return "[" + strings.Join(evs, ",") + "]"
	}
	for b := 0; b < 12; b++ {
		status, res := p.post("/v1/events", "application/json", batch(b))
		require.Equal(t, 202, status, res)
		sent += 500
	}
	require.Equal(t, -1, p.stop(syscall.SIGKILL))
	p = startServe(t, data, "--config", cfg, "--clickhouse", dsn)
	for b := 12; b < 20; b++ {
		status, res := p.post("/v1/events", "application/json", batch(b))
		require.Equal(t, 202, status, res)
		sent += 500
	}
	c := chConn(t, dsn)
	waitFor(t, 60*time.Second, "the sink to catch up", func() bool { return chUintSoon(c, "SELECT count() FROM usage_events") >= uint64(sent) })
	time.Sleep(500 * time.Millisecond) // anything extra would be a duplicate: give it a chance to show
	assert.Equal(t, uint64(sent), chUint(t, c, "SELECT count() FROM usage_events"))
	assert.Equal(t, uint64(sent), chUint(t, c, "SELECT uniqExact(event_id) FROM usage_events"), "no duplicates")
	for cust, tokens := range want {
		var got uint64
		require.NoError(t, c.QueryRow(context.Background(), "SELECT toUInt64(sum(q)) FROM usage_events ARRAY JOIN meters AS m, quantities AS q WHERE customer = ? AND m = 'tokens'", cust).Scan(&got))
		assert.Equal(t, uint64(tokens), got, cust)
	}
	// Ledger rows: one debit per event, exactly once.
	waitFor(t, 60*time.Second, "ledger rows", func() bool {
		return chUintSoon(c, "SELECT count() FROM ledger_entries WHERE type = 'usage.debited.v1'") >= uint64(sent)
	})
	assert.Equal(t, uint64(sent), chUint(t, c, "SELECT count() FROM ledger_entries WHERE type = 'usage.debited.v1'"))
	assert.Equal(t, uint64(sent), chUint(t, c, "SELECT uniqExact(event_id) FROM ledger_entries WHERE type = 'usage.debited.v1'"))
}

// privateClickHouse runs a ClickHouse server of the test's own, so the test can stop and
// start it.
type privateClickHouse struct {
	t        *testing.T
	dir      string
	tcp, htp int
	cmd      *exec.Cmd
}

func startPrivateClickHouse(t *testing.T) *privateClickHouse {
	t.Helper()
	clickhouseDSN(t) // same skip/fail rule: the suite's test command installs ClickHouse
	ch := &privateClickHouse{t: t, dir: t.TempDir(), tcp: freePort(t), htp: freePort(t)}
	out, err := exec.Command("bash", filepath.Join("..", "..", "scripts", "clickhouse-config.sh"), ch.dir, fmt.Sprint(ch.tcp), fmt.Sprint(ch.htp)).CombinedOutput()
	require.NoError(t, err, "%s", out)
	ch.start()
	t.Cleanup(ch.stop)
	return ch
}

func (ch *privateClickHouse) dsn() string {
	return fmt.Sprintf("clickhouse://127.0.0.1:%d/allot", ch.tcp)
}

func (ch *privateClickHouse) start() {
	ch.cmd = exec.Command("clickhouse-server", "--config-file="+filepath.Join(ch.dir, "config.xml"))
	require.NoError(ch.t, ch.cmd.Start())
	deadline := time.Now().Add(60 * time.Second)
	for {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ch.tcp)); err == nil {
			c.Close()
			return
		}
		require.True(ch.t, time.Now().Before(deadline), "private ClickHouse did not start")
		time.Sleep(100 * time.Millisecond)
	}
}

func (ch *privateClickHouse) stop() {
	if ch.cmd != nil && ch.cmd.Process != nil {
		ch.cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { ch.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			ch.cmd.Process.Kill()
			<-done
		}
		ch.cmd = nil
	}
}

// TestSinkCatchesUpAfterClickHouseOutage: ClickHouse goes away, usage keeps being accepted and
// rated; when ClickHouse is back the sink writes everything, once.
func TestSinkCatchesUpAfterClickHouseOutage(t *testing.T) {
	ch := startPrivateClickHouse(t)
	cfg := writeConfigText(t, analyticsConfig)
	p := startServe(t, t.TempDir(), "--config", cfg, "--clickhouse", ch.dsn())
	post := func(prefix string, n int) {
		var evs []string
		for i := 0; i < n; i++ {
			evs = append(evs, fmt.Sprintf(`{"id":"%s%d","type":"llm","customer":"o%d","data":{"tokens":1}}`, prefix, i, i%5))
		}
		status, res := p.post("/v1/events", "application/json", "["+strings.Join(evs, ",")+"]")
		require.Equal(t, 202, status, res)
	}
	post("before-", 200)
	c := chConn(t, ch.dsn())
	waitFor(t, 30*time.Second, "the first rows", func() bool { return chUintSoon(c, "SELECT count() FROM usage_events") == 200 })

	ch.stop()
	post("during-", 300)
	status, body, _ := p.request("GET", "/v1/customers/o1/balance", "")
	require.Equal(t, 200, status, body)
	resp, _, _ := p.request("GET", "/readyz", "")
	assert.Equal(t, 503, resp, "readiness reports ClickHouse down")
	// The lag grows through the outage (it stayed at the last healthy batch's figure).
	waitFor(t, 30*time.Second, "the lag to show the outage", func() bool {
		return metricSum(t, p.httpURL, "allot_sink_lag_seconds") > 1.5
	})

	ch.start()
	c2 := chConn(t, ch.dsn())
	waitFor(t, 60*time.Second, "the sink to catch up", func() bool { return chUintSoon(c2, "SELECT count() FROM usage_events") >= 500 })
	time.Sleep(500 * time.Millisecond)
	assert.Equal(t, uint64(500), chUint(t, c2, "SELECT count() FROM usage_events"))
	assert.Equal(t, uint64(500), chUint(t, c2, "SELECT uniqExact(event_id) FROM usage_events"))
	assert.Contains(t, p.logs(), "clickhouse sink restarting")
}

// What ClickHouse's columns cannot hold is left out and counted, and everything after it still
// arrives: a quantity of 10^30 (ingest takes 40 digits, Decimal128(9) holds 29) made the
// driver refuse the batch, and the sink retried it for ever — no row of any product reached
// ClickHouse after it. Nested members of data do not shadow top-level ones in properties.
func TestSinkLeavesOutWhatClickHouseCannotHold(t *testing.T) {
	dsn := testDatabase(t, clickhouseDSN(t))
	p := startServe(t, t.TempDir(), "--config", writeConfigText(t, analyticsConfig), "--clickhouse", dsn)
	status, res := p.post("/v1/events", "application/json", `[
		{"id":"big","type":"llm","customer":"c1","data":{"tokens":"1000000000000000000000000000000"}},
		{"id":"ok","type":"llm","customer":"c2","data":{"tokens":5}},
		{"id":"s1","type":"signin","customer":"c3","data":{"a":{"user":"q"},"user":"x"}},
		{"id":"s2","type":"signin","customer":"c3","data":{"a":{"user":"q"},"user":"y"}}]`)
	require.Equal(t, 202, status, res)
	require.EqualValues(t, 4, res["accepted"], res)
	c := chConn(t, dsn)
	waitFor(t, 30*time.Second, "every event's row", func() bool { return chUintSoon(c, "SELECT count() FROM usage_events") == 4 })
	assert.EqualValues(t, 1, chUint(t, c, "SELECT count() FROM usage_events WHERE event_id = 'big' AND length(meters) = 1"),
		"the big event's row, with its calls but not its tokens")
	assert.EqualValues(t, 3, metricSum(t, p.httpURL, "allot_sink_unstorable_total"), "its tokens, peak and last values")
	waitFor(t, 30*time.Second, "the ledger's rows", func() bool {
		return chUintSoon(c, "SELECT count() FROM ledger_entries WHERE event_id = 'ok'") > 0
	})
	status, body, _ := p.request("GET", "/v1/usage?meter=users&window=day", "")
	require.Equal(t, 200, status, body)
	require.Len(t, body["data"], 1, body)
	assert.Equal(t, "2", fmt.Sprint(body["data"].([]any)[0].(map[string]any)["value"]), "x and y, not the nested q")
}
