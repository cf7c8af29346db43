package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/client"
)

type natsNode struct {
	t          *testing.T
	name, dir  string
	port, cprt int
	routes     string
	cmd        *exec.Cmd
}

func (n *natsNode) start() {
	n.t.Helper()
	n.cmd = exec.Command(natsServerBin, "-js", "-sd", n.dir, "-a", "127.0.0.1", "-p", fmt.Sprint(n.port), "-n", n.name,
		"--cluster_name", "allot", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.cprt), "--routes", n.routes)
	require.NoError(n.t, n.cmd.Start())
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", n.port)); err == nil {
			c.Close()
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	n.t.Fatalf("nats node %s did not start", n.name)
}

func (n *natsNode) kill() {
	n.cmd.Process.Kill()
	n.cmd.Wait()
}

// startNATSCluster runs three nats-server nodes with JetStream, clustered on loopback, and
// waits until JetStream can place a replicated stream.
func startNATSCluster(t *testing.T) ([]*natsNode, string) {
	t.Helper()
	startNATSServer(t) // builds the binary once
	var nodes []*natsNode
	var routes, urls []string
	for i := 0; i < 3; i++ {
		n := &natsNode{t: t, name: fmt.Sprintf("n%d", i+1), dir: t.TempDir(), port: freePort(t), cprt: freePort(t)}
		nodes = append(nodes, n)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", n.cprt))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	for _, n := range nodes {
		n.routes = strings.Join(routes, ",")
		n.start()
		t.Cleanup(func() {
			if n.cmd != nil && n.cmd.ProcessState == nil {
				n.kill()
			}
		})
	}
	url := strings.Join(urls, ",")
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	waitFor(t, 60*time.Second, "JetStream cluster to accept an R3 stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: 3})
		return err == nil
	})
	require.NoError(t, js.DeleteStream(context.Background(), "PROBE"))
	return nodes, url
}

const clusterConfig = `keys:
  - {key: ` + testKey + `, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 0.5, effective_from: 2020-01-01T00:00:00Z}
quotas:
  api: {meter: requests, limit: 100000, period: {unit: day}}
`

// TestClusterMixedWorkload: a 3-node NATS cluster, two API processes, two rating workers and a
// sink; a mixed workload through the Go client while one NATS node and one rating worker are
// killed and restarted. Afterwards balances, quota counters and ClickHouse totals equal an
// independent computation of what was acknowledged, and replay --verify passes.
func TestClusterMixedWorkload(t *testing.T) {
	dsn := testDatabase(t, clickhouseDSN(t))
	nodes, url := startNATSCluster(t)
	cfg := writeConfigText(t, clusterConfig)
	common := []string{"--nats-url", url, "--replicas", "3", "--config", cfg}
	a1 := startServe(t, t.TempDir(), append(common, "--roles", "ingest,api,projector,webhooks")...)
	a2 := startServe(t, t.TempDir(), append(common, "--roles", "ingest,api,projector,sink", "--clickhouse", dsn)...)
	r1 := startServe(t, t.TempDir(), append(common, "--roles", "rating")...)
	r2 := startServe(t, t.TempDir(), append(common, "--roles", "rating")...)
	_ = r2
	clients := []*client.Client{client.New(a1.httpURL, testKey), client.New(a2.httpURL, testKey)}
	for _, c := range clients {
		c.Patience = 90 * time.Second // NATS fail-over takes a few seconds
	}
	ctx := context.Background()
	customers := []string{"c0", "c1", "c2", "c3", "c4"}
	credit := map[string]float64{} // expected balance per customer
	tokens := map[string]float64{} // expected debits ×2
	quotaUsed := map[string]int{}  // expected quota use
	step := 0
	work := func(rounds int) {
		for i := 0; i < rounds; i++ {
			step++
			c := clients[step%2]
			cust := customers[step%len(customers)]
			switch step % 4 {
			case 0:
				_, err := c.Grant(ctx, cust, client.Grant{Amount: "40", Source: "wallet"})
				require.NoError(t, err)
				credit[cust] += 40
			case 1:
				var evs []client.Event
				for j := 0; j < 20; j++ {
					evs = append(evs, client.Event{ID: fmt.Sprintf("e-%d-%d", step, j), Type: "llm", Customer: cust, Data: map[string]any{"tokens": 3}})
				}
				res, err := c.SendEvents(ctx, evs)
				require.NoError(t, err)
				require.Equal(t, 20, res.Accepted+res.Duplicates)
				tokens[cust] += 60
				credit[cust] -= 30
			case 2:
				_, err := c.QuotaIncrement(ctx, "api", cust, "2")
				require.NoError(t, err)
				quotaUsed[cust] += 2
			case 3:
				r, err := c.Reserve(ctx, cust, "1", 0)
				if errors.Is(err, client.ErrInsufficientCredits) {
					continue
				}
				require.NoError(t, err)
				_, err = c.Commit(ctx, r.ID, "0.5")
				require.NoError(t, err)
				credit[cust] -= 0.5
			}
		}
	}
	work(40)
	nodes[2].kill() // a NATS node dies
	work(40)
	nodes[2].start()
	require.Equal(t, -1, r1.stop(syscall.SIGKILL)) // a rating worker dies
	work(40)
	r1 = startServe(t, t.TempDir(), append(common, "--roles", "rating")...)
	work(20)

	// Balances and quota counters, from both API processes.
	fmtCredits := func(f float64) string {
		s := strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.6f", f), "0"), ".")
		if s == "-0" {
			return "0"
		}
		return s
	}
	waitFor(t, 90*time.Second, "balances to settle", func() bool {
		for _, cust := range customers {
			for _, c := range clients {
				b, err := c.Balance(ctx, cust)
				if err != nil || b.Balance != fmtCredits(credit[cust]) {
					return false
				}
			}
		}
		return true
	})
	for _, cust := range customers {
		q, err := clients[0].QuotaCheck(ctx, "api", cust, "")
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(quotaUsed[cust]), q.Used, cust)
	}
	// ClickHouse totals.
	ch := chConn(t, dsn)
	var mismatch string
	deadline := time.Now().Add(90 * time.Second)
	for {
		mismatch = ""
		for _, cust := range customers {
			var micro int64
			if err := ch.QueryRow(ctx, "SELECT sum(amount_micro) FROM ledger_entries WHERE customer = ? AND type = 'usage.debited.v1'", cust).Scan(&micro); err != nil {
				mismatch += err.Error()
			} else if micro != int64(tokens[cust]*0.5*1e6) {
				mismatch += fmt.Sprintf(" %s: %d want %d;", cust, micro, int64(tokens[cust]*0.5*1e6))
			}
		}
		if mismatch == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	require.Empty(t, mismatch, "ClickHouse debits\n%s", a2.logs())
	out, err := exec.Command(allotBin, "replay", "--verify", "--nats-url", url).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "verify: OK")
	assert.Equal(t, 4, strings.Count(string(out), "live:"), "every process's projection is compared:\n%s", out)
	// Every rating partition, rated by two processes in turn (one of them killed), is rebuilt
	// from the usage stream on the views they recorded and matches its snapshot.
	assert.Regexp(t, `(?s)(rating p\d+: sha256:\S+ at usage sequence \d+ \(\d+ events, \d+ rated items\): same\n.*){8}`, string(out))
	assert.NotContains(t, string(out), "not rebuilt")

	// A process started without --replicas (and replay, above, with the defaults) leaves every
	// stream and bucket at R3: they would have been turned into R1 ones.
	startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg, "--roles", "api")
	nc, err := nats.Connect(url)
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	for _, name := range []string{"ALLOT_USAGE", "ALLOT_LEDGER", "OBJ_ALLOT_SNAPSHOTS", "KV_ALLOT_IDEMPOTENCY"} {
		s, err := js.Stream(ctx, name)
		require.NoError(t, err, name)
		assert.Equal(t, 3, s.CachedInfo().Config.Replicas, name)
	}
}

// TestBenchIngestOnCluster runs the ingest figure on a 3-node cluster as well.
func TestBenchIngestOnCluster(t *testing.T) {
	_, url := startNATSCluster(t)
	out, err := exec.Command(allotBin, "bench", "ingest", "--events", "3000", "--rounds", "1", "--nats-url", url, "--json").Output()
	require.NoError(t, err)
	var results []benchResult
	require.NoError(t, json.Unmarshal(out, &results), string(out))
	require.Len(t, results, 2)
	assert.Equal(t, "ingest_http_cluster", results[1].Name)
	assert.Equal(t, "jetstream_async_publish_cluster", results[1].BaselineName)
	assert.Greater(t, results[1].BaselineValue, 0.0)
}
