package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// tokensAtHalfACredit prices an llm event's tokens at 0.5 credits each.
const tokensAtHalfACredit = `keys:
  - {key: ` + testKey + `, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 0.5, effective_from: 2020-01-01T00:00:00Z}
`

// TestReplayVerifyReratesOnTheViewsThatRated: `allot replay --verify` rebuilds every rating
// partition from the usage stream and compares it with the partition's stored snapshot. Events
// rated before a meter existed were unmetered and must stay so in the rebuild, events after
// it are charged: the rebuild takes each event's view from the rating.view.v1 records, not the
// configuration at the end (which would count the early events too and differ). A SIGKILL in
// the middle makes a worker restart on its snapshot's view; a rating snapshot that does not
// match the usage stream fails verification with exit 1.
func TestReplayVerifyReratesOnTheViewsThatRated(t *testing.T) {
	cfg := writeConfigText(t, tokensAtHalfACredit+`quotas:
  daily-tokens: {meter: tokens, limit: 1000000, period: {unit: day, mode: fixed, anchor: `+midWindowAnchor(24*time.Hour)+`}}
`)
	data := t.TempDir()
	p := startServe(t, data, "--config", cfg, "--snapshot-every", "100ms")
	n := 0
	send := func(typ string, count int) {
		t.Helper()
		for i := 0; i < count; i++ {
			n++
			st, res := p.post("/v1/events", "application/json", fmt.Sprintf(`{"id":"e-%d","type":%q,"customer":"c%d","data":{"tokens":10}}`, n, typ, n%3))
			require.Equal(t, 202, st, res)
		}
	}
	rated := func(atLeast float64) {
		t.Helper()
		require.Eventually(t, func() bool { return metricSum(t, p.httpURL, "allot_rating_events_total") >= atLeast }, 20*time.Second, 20*time.Millisecond)
	}
	send("api", 6) // no meter counts them yet: unmetered
	send("llm", 2)
	rated(8)
	for _, put := range [][2]string{
		{"/v1/meters/api", `{"event_type":"api","aggregation":"count"}`},
		{"/v1/rules/api-price", `{"meter":"api","model":"per_unit","price":"1","effective_from":"2020-01-01T00:00:00Z"}`},
	} {
		status, body, err := p.request("PUT", put[0], put[1])
		require.NoError(t, err)
		require.Contains(t, []int{200, 201}, status, "%v", body)
	}
	send("api", 6)
	send("llm", 2)
	rated(16)
	time.Sleep(300 * time.Millisecond) // a snapshot on the newer view
	require.Equal(t, 6.0, metricSum(t, p.httpURL, "allot_rating_unmetered_events_total"), "the api events before the meter, and only those")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	p.waitExit(10 * time.Second)
	p = startServe(t, data, "--config", cfg, "--snapshot-every", "100ms")
	send("api", 3)
	rated(3)
	// 4 llm events × 10 tokens × 0.5, and the 9 api events after the meter × 1.
	require.Eventually(t, func() bool {
		total := 0.0
		for c := 0; c < 3; c++ {
			var d float64
			fmt.Sscan(debited(t, p.httpURL, fmt.Sprintf("c%d", c)), &d)
			total += d
		}
		return total == 29
	}, 20*time.Second, 50*time.Millisecond, "debits of the metered events only")
	time.Sleep(300 * time.Millisecond) // the partitions' snapshots catch up

	same := regexp.MustCompile(`rating p\d+: sha256:[0-9a-f]{64} at usage sequence \d+ \((\d+) events, (\d+) rated items\): same`)
	check := func(args ...string) {
		t.Helper()
		out, err := exec.Command(allotBin, append([]string{"replay", "--verify"}, args...)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "verify: OK, the rebuilt state is byte-identical\n")
		assert.NotContains(t, string(out), "not rebuilt")
		events, debits := 0, 0
		for _, m := range same.FindAllStringSubmatch(string(out), -1) {
			var k, d int
			fmt.Sscan(m[1], &k)
			fmt.Sscan(m[2], &d)
			events, debits = events+k, debits+d
		}
		assert.Equal(t, n, events, "every usage event re-rated:\n%s", out)
		assert.Equal(t, 17, debits, "the 4 llm events' debits and quota uses, and the 9 api events' debits after the meter, each once:\n%s", out)
	}
	check("--nats-url", p.natsURL)
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	check("--data", data)
	out, err := exec.Command(allotBin, "replay", "--verify", "--rating=false", "--data", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.NotContains(t, string(out), "rating p", "--rating=false replays the ledger alone")

	// A rating window whose quantity the usage stream does not bear out.
	tamperRatingSnapshot(t, data)
	cmd := exec.Command(allotBin, "replay", "--verify", "--data", data)
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	assert.Regexp(t, `rating p\d+: sha256:\S+ at usage sequence \d+ \(\d+ events, \d+ rated items\): state DIFFERS from its stored snapshot sha256:`, string(out))
	assert.Contains(t, string(out), "verify: MISMATCH")
}

// The state holds the periods' quantities only: a price rated on another view than the one the
// records name leaves it the same. Replay compares the debits of the events rated again with
// the ledger's too, and says they differ.
func TestReplayVerifyComparesTheDebitsWithTheLedger(t *testing.T) {
	cfg := writeConfigText(t, tokensAtHalfACredit)
	data := t.TempDir()
	p := startServe(t, data, "--config", cfg, "--snapshot-every", "100ms")
	for i := 0; i < 6; i++ {
		st, res := p.post("/v1/events", "application/json", fmt.Sprintf(`{"id":"e-%d","type":"llm","customer":"c%d","data":{"tokens":10}}`, i, i%2))
		require.Equal(t, 202, st, res)
	}
	require.Eventually(t, func() bool { return metricSum(t, p.httpURL, "allot_rating_events_total") >= 6 }, 20*time.Second, 20*time.Millisecond)
	// A second price, which no event was rated on: rating moves to it at its next event only.
	status, body, err := p.request("PUT", "/v1/rules/price", `{"meter":"tokens","model":"per_unit","price":"0.7","effective_from":"2021-01-01T00:00:00Z"}`)
	require.NoError(t, err)
	require.Contains(t, []int{200, 201}, status, "%v", body)
	time.Sleep(300 * time.Millisecond)
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	out, err := exec.Command(allotBin, "replay", "--verify", "--data", data).CombinedOutput()
	require.NoError(t, err, "%s", out)

	// Records that say every partition rated its events on the second price.
	forgeViews(t, data)
	cmd := exec.Command(allotBin, "replay", "--verify", "--data", data)
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, 1, cmd.ProcessState.ExitCode(), "%s", out)
	assert.Regexp(t, `rating p\d+: sha256:\S+ at usage sequence \d+ \(\d+ events, [1-9]\d* rated items\): rated items DIFFER from the ledger's \(rated again \d+:[0-9a-f]{16}, ledger \d+:[0-9a-f]{16}\)\n`, string(out))
	assert.NotContains(t, string(out), "state DIFFERS", "the quantities are the same on either price")
	assert.Contains(t, string(out), "verify: MISMATCH")
}

// forgeViews appends, for every rating partition with a snapshot, a view record saying all its
// events were rated on the configuration as it stands last.
func forgeViews(t *testing.T, data string) {
	t.Helper()
	js, closeJS := offlineJetStream(t, data)
	defer closeJS()
	ctx := context.Background()
	cs, err := js.Stream(ctx, bus.ConfigStream)
	require.NoError(t, err)
	info, err := cs.Info(ctx)
	require.NoError(t, err)
	last := info.State.LastSeq
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	infos, err := store.List(ctx)
	require.NoError(t, err)
	forged := 0
	for _, in := range infos {
		var p int
		if _, err := fmt.Sscanf(in.Name, "rating/p%d", &p); err != nil {
			continue
		}
		b, _ := json.Marshal(events.RatingView{Partition: p, After: 0, Config: last})
		_, err := js.PublishMsg(ctx, &nats.Msg{Subject: events.RatingViewSubject(p), Data: b, Header: nats.Header{events.HeaderType: []string{events.TypeRatingView}}})
		require.NoError(t, err)
		forged++
	}
	require.NotZero(t, forged)
}
