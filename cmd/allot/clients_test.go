package main

// Clients nobody here wrote: the CloudEvents Go SDK over HTTP, and a plain nats.go client
// publishing straight onto a usage subject.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

func TestCloudEventsSDK(t *testing.T) {
	p := startServe(t, t.TempDir(), "--config", writeConfig(t))
	ctx := context.Background()

	// A batch in structured batch mode, built by the SDK.
	var batch []cloudevents.Event
	for i := 0; i < 5; i++ {
		e := cloudevents.NewEvent()
		e.SetID(fmt.Sprintf("sdk-%d", i))
		e.SetSource("/billing/test")
		e.SetType("llm")
		e.SetSubject("cust-sdk")
		e.SetTime(time.Date(2026, 5, 1, 12, 0, i, 0, time.UTC))
		require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]any{"tokens": 10 + i}))
		batch = append(batch, e)
	}
	req, err := cehttp.NewHTTPRequestFromEvents(ctx, p.httpURL+"/v1/events", batch)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+testKey)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	var res map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&res))
	resp.Body.Close()
	require.Equal(t, 202, resp.StatusCode, res)
	assert.EqualValues(t, 5, res["accepted"])

	// A single event through the SDK's client, in its default (binary) mode, then forced
	// structured; the same id twice is one event.
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(p.httpURL+"/v1/events"),
		cehttp.WithHeader("Authorization", "Bearer "+testKey))
	require.NoError(t, err)
	e := cloudevents.NewEvent()
	e.SetID("sdk-single")
	e.SetSource("/billing/test")
	e.SetType("llm")
	e.SetSubject("cust-sdk")
	// The SDK's client stamps events without a time at send; a retry must carry the same
	// time to be the same event (otherwise allot reports a conflicting reuse of the id).
	e.SetTime(time.Date(2026, 5, 1, 13, 0, 0, 0, time.UTC))
	require.NoError(t, e.SetData(cloudevents.ApplicationJSON, map[string]any{"tokens": "7.25"}))
	res1 := c.Send(ctx, e)
	require.True(t, cloudevents.IsACK(res1), "%v", res1)
	res2 := c.Send(cloudevents.WithEncodingStructured(ctx), e)
	require.True(t, cloudevents.IsACK(res2), "%v", res2)
	require.EqualValues(t, 6, usageMsgs(t, p.natsURL))

	// A bad event is a NACK with a problem, not an ACK.
	bad := e.Clone()
	bad.SetID("sdk-bad")
	require.NoError(t, bad.SetData(cloudevents.ApplicationJSON, map[string]any{"tokens": "many"}))
	result := c.Send(ctx, bad)
	require.False(t, cloudevents.IsACK(result))
	require.EqualValues(t, 6, usageMsgs(t, p.natsURL))
}

func TestPlainNATSPublisher(t *testing.T) {
	p := startServe(t, t.TempDir(), "--config", writeConfig(t))
	nc, err := nats.Connect(p.natsURL)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx := context.Background()

	// What the README tells producers to do: JSON body, subject per customer, Nats-Msg-Id
	// "<product>:<env>:<event id>".
	body := `{"id":"n1","type":"llm","customer":"user@example.com","time":"2026-05-01T12:00:00Z","data":{"tokens":3}}`
	subject := "allot.usage.acme.test." + events.Token("user@example.com")
	ack, err := js.Publish(ctx, subject, []byte(body), jetstream.WithMsgID("acme:test:n1"))
	require.NoError(t, err)
	assert.False(t, ack.Duplicate)
	ack, err = js.Publish(ctx, subject, []byte(body), jetstream.WithMsgID("acme:test:n1"))
	require.NoError(t, err)
	assert.True(t, ack.Duplicate, "the dedup key is shared with HTTP ingest")

	// HTTP ingest of the same id is a duplicate too.
	status, res := p.post("/v1/events", "application/json", body)
	require.Equal(t, 202, status, res)
	assert.EqualValues(t, 1, res["duplicates"])

	s, err := js.Stream(ctx, "ALLOT_USAGE")
	require.NoError(t, err)
	m, err := s.GetMsg(ctx, ack.Sequence)
	require.NoError(t, err)
	addr, err := events.ParseUsageSubject(m.Subject)
	require.NoError(t, err)
	assert.Equal(t, "user@example.com", addr.Customer)
	assert.GreaterOrEqual(t, addr.Partition, 0, "the stream adds the partition")
	u, err := events.DecodeUsage(m.Data)
	require.NoError(t, err)
	assert.Equal(t, "n1", u.ID)

	// A subject outside the scheme is not stored by any allot stream.
	_, err = js.Publish(ctx, "allot.usage.acme.test", []byte(body))
	require.Error(t, err)

	// HTTP ingest refuses events dated far ahead; one published straight to JetStream is rated
	// at the time the stream received it (and counted), so no window that has not begun counts.
	future := `{"id":"n2","type":"llm","customer":"user@example.com","time":"2099-01-01T00:00:00Z","data":{"tokens":4}}`
	status, res = p.post("/v1/events", "application/json", future)
	require.Equal(t, 400, status, res)
	assert.Equal(t, "time", res["field"], res)
	published := time.Now().UTC()
	_, err = js.Publish(ctx, subject, []byte(future), jetstream.WithMsgID("acme:test:n2"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return metricSum(t, p.httpURL, "allot_rating_future_dated_events_total") == 1
	}, 10*time.Second, 50*time.Millisecond)
	var times []string
	require.Eventually(t, func() bool {
		resp, b := get(t, p.httpURL+"/v1/customers/user@example.com/ledger", testKey)
		require.Equal(t, 200, resp.StatusCode, b)
		var page struct {
			Data []struct {
				Entry struct {
					EventID   string `json:"event_id"`
					EventTime string `json:"event_time"`
				} `json:"entry"`
			} `json:"data"`
		}
		require.NoError(t, json.Unmarshal([]byte(b), &page))
		times = times[:0]
		for _, e := range page.Data {
			if e.Entry.EventID == "n2" {
				times = append(times, e.Entry.EventTime)
			}
		}
		return len(times) == 1
	}, 10*time.Second, 50*time.Millisecond)
	at, err := time.Parse(time.RFC3339Nano, times[0])
	require.NoError(t, err)
	assert.WithinDuration(t, published, at, 5*time.Second, "rated at the stream's time, not 2099")
}

func TestBenchIngestJSON(t *testing.T) {
	out, err := exec.Command(allotBin, "bench", "ingest", "--events", "2000", "--rounds", "1", "--json").Output()
	require.NoError(t, err)
	var results []benchResult
	require.NoError(t, json.Unmarshal(out, &results), string(out))
	require.Len(t, results, 1)
	r := results[0]
	assert.Equal(t, "ingest_http", r.Name)
	assert.Equal(t, "jetstream_async_publish", r.BaselineName)
	assert.Greater(t, r.Value, 0.0)
	assert.Greater(t, r.BaselineValue, 0.0)
	assert.InDelta(t, r.Value/r.BaselineValue, r.Ratio, 1e-9)
}

// clickhouseDSN is the server the test command started, or a skip (a failure under CI).
func clickhouseDSN(t *testing.T) string {
	t.Helper()
	dsn := os.Getenv("ALLOT_TEST_CLICKHOUSE")
	if dsn == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("ALLOT_TEST_CLICKHOUSE is not set under CI: run the suite with `bash scripts/test.sh`, which starts ClickHouse")
		}
		t.Skip("SKIPPING: no ClickHouse; `bash scripts/test.sh` starts one and sets ALLOT_TEST_CLICKHOUSE")
	}
	return dsn
}

func TestReadyzChecksClickHouse(t *testing.T) {
	dsn := clickhouseDSN(t)
	p := startServe(t, t.TempDir(), "--clickhouse", dsn)
	resp, err := http.Get(p.httpURL + "/readyz")
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode, body)
	assert.Equal(t, "ok", body["checks"].(map[string]any)["clickhouse"])

	down := startServe(t, t.TempDir(), "--clickhouse", fmt.Sprintf("clickhouse://127.0.0.1:%d/default?dial_timeout=200ms", freePort(t)))
	resp, err = http.Get(down.httpURL + "/readyz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 503, resp.StatusCode)
	assert.True(t, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/problem+json"))
}

func TestBenchFiguresHaveBaselines(t *testing.T) {
	out, err := exec.Command(allotBin, "bench", "memory", "--customers", "2000", "--events", "2000", "--json").Output()
	require.NoError(t, err)
	var results []benchResult
	require.NoError(t, json.Unmarshal(out, &results), string(out))
	require.Len(t, results, 2)
	assert.Equal(t, "memory_per_customer", results[0].Name)
	assert.Greater(t, results[0].Value, 0.0)
	assert.Equal(t, 1024.0, results[0].BaselineValue)
	assert.Equal(t, "dedup_bytes_per_id", results[1].Name)
	assert.Greater(t, results[1].BaselineValue, 0.0)
	out, err = exec.Command(allotBin, "bench", "nonsense").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "known figures")
}

// TestBenchQuotaRunsAgainstRedis runs the quota figure end to end: a real redis-server behind
// the baseline service, and allot, at the same concurrency.
func TestBenchQuotaRunsAgainstRedis(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("redis-server is missing under CI: scripts/test.sh installs it")
		}
		t.Skip("SKIPPING: no redis-server; `bash scripts/test.sh` installs it")
	}
	out, err := exec.Command(allotBin, "bench", "quota", "--events", "40000", "--json").Output()
	require.NoError(t, err)
	var results []benchResult
	require.NoError(t, json.Unmarshal(out, &results), string(out))
	var names []string
	for _, r := range results {
		names = append(names, r.Name)
	}
	require.Equal(t, []string{"quota_increment_throughput", "quota_increment_p99", "quota_check_p99", "quota_check_throughput",
		"quota_check_p99_at_20k_rps", "quota_increment_one_customer_throughput", "quota_increment_one_customer_p99"}, names)
	for _, r := range results {
		assert.Greater(t, r.Value, 0.0, r.Name)
		assert.Greater(t, r.BaselineValue, 0.0, r.Name)
	}
}

func TestBenchSinkAgainstClickHouse(t *testing.T) {
	dsn := clickhouseDSN(t)
	cmd := exec.Command(allotBin, "bench", "sink", "--events", "5000", "--json")
	cmd.Env = append(os.Environ(), "ALLOT_CLICKHOUSE="+dsn)
	out, err := cmd.Output()
	require.NoError(t, err)
	var results []benchResult
	require.NoError(t, json.Unmarshal(out, &results), string(out))
	require.Len(t, results, 2)
	assert.Equal(t, "sink_rows", results[0].Name)
	assert.Greater(t, results[0].BaselineValue, 0.0)
	assert.Equal(t, "sink_lag", results[1].Name)
}

// TestBenchCheckAndReplayRun runs the check, reservation and replay figures end to end, small:
// the lean HTTP client against the real API, and replay through projector.Rebuild.
func TestBenchCheckAndReplayRun(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "check", "--events", "4000", "--json"},
		{"bench", "replay", "--events", "4000", "--rounds", "1", "--json"},
	} {
		out, err := exec.Command(allotBin, args...).Output()
		require.NoError(t, err, "%v", args)
		var results []benchResult
		require.NoError(t, json.Unmarshal(out, &results), string(out))
		require.NotEmpty(t, results)
		names := map[string]bool{}
		for _, r := range results {
			assert.Greater(t, r.Value, 0.0, r.Name)
			assert.Greater(t, r.BaselineValue, 0.0, r.Name)
			names[r.Name] = true
		}
		if args[1] == "replay" {
			assert.Equal(t, map[string]bool{"replay": true, "replay_rating": true}, names, "the ledger's fold and rating's rebuild")
		}
	}
}

// A serve flag out of range is a mistake said so, exit 2, before anything starts: a negative
// --max-body became 5 MiB and a negative --key-requests-per-minute no limit at all.
func TestServeRefusesFlagsOutOfRange(t *testing.T) {
	for _, flag := range [][]string{{"--max-body", "-5"}, {"--dedup-window", "0s"}, {"--replicas", "0"},
		{"--key-requests-per-minute", "-1"}, {"--webhook-retry-scale", "NaN"}, {"--usage-query-timeout", "-1s"},
		{"--expiry-grace", "-1m"}, {"--rating-linger", "-1s"}, {"--snapshot-every", "0s"}, {"--webhook-timeout", "0s"},
		// 0 was taken, then replaced by the default (1m, 100ms) without a word.
		{"--expiry-grace", "0s"}, {"--rating-linger", "0s"}, {"--webhook-retry-scale", "1e10"}} {
		cmd := exec.Command(allotBin, append([]string{"serve", "--data", t.TempDir(), "--http", "127.0.0.1:0", "--nats-listen", "off"}, flag...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%v: %s", flag, out)
		assert.Equal(t, 2, exit.ExitCode(), "%v: %s", flag, out)
		assert.Contains(t, string(out), flag[0], "the message names the flag")
	}
}

// replay, gateway and migrate take no arguments: the flag parser stops at the first plain word,
// and "replay verify --data D" opened ./data, ignoring --data.
func TestCommandsRefuseStrayArguments(t *testing.T) {
	for _, args := range [][]string{{"replay", "verify", "--data", t.TempDir()}, {"gateway", "extra"}, {"migrate", "extra", "--clickhouse", "clickhouse://127.0.0.1:1/x"}} {
		cmd := exec.Command(allotBin, args...)
		cmd.Dir = t.TempDir()
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%v: %s", args, out)
		assert.Equal(t, 2, exit.ExitCode(), "%v: %s", args, out)
		assert.Contains(t, string(out), "takes no arguments", "%v", args)
		_, statErr := os.Stat(filepath.Join(cmd.Dir, "data"))
		assert.True(t, os.IsNotExist(statErr), "%v made ./data", args)
	}
}

// allot gateway reads ALLOT_GATEWAY_<NAME>, not ALLOT_<NAME>: beside allot serve, ALLOT_CONFIG
// names serve's file, which the gateway read as its own and refused.
func TestGatewayHasItsOwnEnvironment(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "serve.yaml"), []byte("keys: []\n"), 0o600))
	cmd := exec.Command(allotBin, "gateway")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ALLOT_CONFIG=serve.yaml", "ALLOT_GATEWAY_CONFIG=missing.yaml")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "missing.yaml", "the gateway's own variable names its file")
	assert.NotContains(t, string(out), "keys", "serve's file is not read")
}
