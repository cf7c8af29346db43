package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/projector"
)

var (
	natsServerOnce sync.Once
	natsServerBin  string
	natsServerErr  error
)

// startNATSServer runs a standalone nats-server (built from the module allot depends on) with
// JetStream on a free loopback port.
func startNATSServer(t *testing.T) string {
	t.Helper()
	natsServerOnce.Do(func() {
		natsServerBin = filepath.Join(filepath.Dir(allotBin), "nats-server")
		out, err := exec.Command("go", "build", "-o", natsServerBin, "github.com/nats-io/nats-server/v2").CombinedOutput()
		if err != nil {
			natsServerErr = fmt.Errorf("building nats-server: %v\n%s", err, out)
		}
	})
	require.NoError(t, natsServerErr)
	port := freePort(t)
	cmd := exec.Command(natsServerBin, "-js", "-sd", t.TempDir(), "-a", "127.0.0.1", "-p", fmt.Sprint(port))
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 200; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return "nats://" + addr
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("nats-server did not start")
	return ""
}

func (p *proc) request(method, path, body string, headers ...string) (int, map[string]any, error) {
	req, err := http.NewRequest(method, p.httpURL+path, strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	json.Unmarshal(b, &out)
	return resp.StatusCode, out, nil
}

// TestTwoProcessesNeverOverbook: two allot processes on one NATS server, 1,000 concurrent
// reservations of 1 credit against a balance of 100: exactly 100 succeed.
func TestTwoProcessesNeverOverbook(t *testing.T) {
	url := startNATSServer(t)
	cfg := writeConfig(t)
	p1 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg)
	p2 := startServe(t, t.TempDir(), "--nats-url", url, "--config", cfg)
	status, body, err := p1.request("POST", "/v1/customers/hot/grants", `{"amount":"100","source":"wallet"}`)
	require.NoError(t, err)
	require.Equal(t, 201, status, body)

	codes := concurrently(1000, []*proc{p1, p2}, "POST", "/v1/reservations", `{"customer":"hot","amount":"1","ttl_seconds":600}`)
	assert.Equal(t, map[int]int{201: 100, 409: 900}, codes)
	for _, p := range []*proc{p1, p2} {
		_, bal, err := p.request("GET", "/v1/customers/hot/balance", "")
		require.NoError(t, err)
		assert.Equal(t, "100", bal["balance"])
		assert.Equal(t, "100", bal["reserved"], "exactly 100 held, seen from both processes")
		assert.Equal(t, "0", bal["effective_balance"])
	}
}

// TestMixedWorkloadSurvivesSIGKILL runs grants, usage, reservations and commits against a real
// `allot serve`, kills it with SIGKILL in the middle of the traffic, restarts it, retries what
// got no answer (with the same Idempotency-Keys and event ids, as a client would), and then
// checks every balance against an independent computation from the acknowledged requests, and
// that `allot replay --verify` rebuilds byte-identical state.
func TestMixedWorkloadSurvivesSIGKILL(t *testing.T) {
	cfg := writeConfigText(t, `keys:
  - {key: `+testKey+`, product: acme, env: test, admin: true}
meters:
  tokens: {event_type: llm, aggregation: sum, value_property: tokens}
rules:
  price: {meter: tokens, model: per_unit, price: 0.5, effective_from: 2020-01-01T00:00:00Z}
quotas:
  calls: {meter: requests, limit: 1000000, period: {unit: day, mode: fixed, anchor: `+midWindowAnchor(24*time.Hour)+`}}
`)
	data := t.TempDir()
	p := startServe(t, data, "--config", cfg, "--snapshot-every", "200ms")
	used := map[string]int{} // each customer's acknowledged quota use (increments and adjustments)
	type op struct {
		method, path, body, key string
		effect                  func(exp map[string]float64) // applied once, when acknowledged
		ok                      func(status int) bool
	}
	rng := rand.New(rand.NewPCG(3, 4))
	customers := []string{"a", "b", "c", "d"}
	var ops []op
	for i := 0; i < 400; i++ {
		c := customers[rng.IntN(len(customers))]
		switch rng.IntN(5) {
		case 0:
			amt := 10 + rng.IntN(50)
			ops = append(ops, op{"POST", "/v1/customers/" + c + "/grants", fmt.Sprintf(`{"amount":"%d","source":"wallet"}`, amt), fmt.Sprintf("g-%d", i),
				func(e map[string]float64) { e[c] += float64(amt) }, func(s int) bool { return s == 201 }})
		case 1, 2:
			tok := 1 + rng.IntN(20)
			ops = append(ops, op{"POST", "/v1/events", fmt.Sprintf(`{"id":"ev-%d","type":"llm","customer":%q,"data":{"tokens":%d}}`, i, c, tok), "",
				func(e map[string]float64) { e[c] -= 0.5 * float64(tok) }, func(s int) bool { return s == 202 }})
		case 3:
			amt := 1 + rng.IntN(5)
			// A reservation committed right away (through the same Idempotency-Key flow).
			ops = append(ops, op{"POST", "/v1/reservations", fmt.Sprintf(`{"customer":%q,"amount":"%d"}`, c, amt), fmt.Sprintf("r-%d", i),
				func(e map[string]float64) {}, func(s int) bool { return s == 201 || s == 409 }}) // 409: insufficient credits (checked below)
		case 4:
			// Quota commands on the customers' quota lane: increments (batched across
			// customers) and adjustments, each retried after a kill with its key.
			n := 1 + rng.IntN(3)
			path, body := "/v1/quotas/calls/increment", fmt.Sprintf(`{"customer":%q,"amount":"%d"}`, c, n)
			if rng.IntN(3) == 0 {
				n = -1
				path, body = "/v1/quotas/calls/adjust", fmt.Sprintf(`{"customer":%q,"amount":"-1"}`, c)
			}
			ops = append(ops, op{"POST", path, body, fmt.Sprintf("q-%d", i),
				func(map[string]float64) { used[c] = max(used[c]+n, 0) }, func(s int) bool { return s == 200 }})
		}
	}
	expected := map[string]float64{}
	committed := map[string]bool{}
	inFlightRetries := 0
	// send is one request as a client makes it: a key still in flight (the first attempt's
	// process died mid-request) is retried after Retry-After, never taken for an answer.
	send := func(method, path, body string, hdr ...string) (int, map[string]any, error) {
		for {
			status, resp, err := p.request(method, path, body, hdr...)
			if err == nil && status == 409 && strings.HasSuffix(fmt.Sprint(resp["type"]), "/idempotency-key-in-flight") {
				inFlightRetries++
				require.Less(t, inFlightRetries, 100, "a key stays in flight")
				time.Sleep(100 * time.Millisecond)
				continue
			}
			return status, resp, err
		}
	}
	run := func(o op, idx int) bool {
		var hdr []string
		if o.key != "" {
			hdr = []string{"Idempotency-Key", o.key}
		}
		status, body, err := send(o.method, o.path, o.body, hdr...)
		if err != nil || status >= 500 {
			return false
		}
		require.True(t, o.ok(status), "op %d %s %s: %d %v", idx, o.method, o.path, status, body)
		if status == 409 {
			require.True(t, strings.HasSuffix(fmt.Sprint(body["type"]), "/insufficient-credits"), "op %d: %v", idx, body)
		}
		if status == 201 && o.path == "/v1/reservations" && !committed[o.key] {
			id := body["id"].(string)
			cs, cb, err := send("POST", "/v1/reservations/"+id+"/commit", `{}`, "Idempotency-Key", "c-"+o.key)
			if err != nil || cs >= 500 {
				return false
			}
			require.Equal(t, 200, cs, "a commit of a fresh reservation is answered, not refused: %v", cb)
			{
				amt := body["amount"].(string)
				var a float64
				fmt.Sscan(amt, &a)
				cust := body["customer"].(string)
				expected[cust] -= a
			}
			committed[o.key] = true
		}
		return true
	}
	killAt, restarts := 200, 0
	for i := 0; i < len(ops); i++ {
		if i == killAt {
			// Kill while a request is in flight.
			go func() { time.Sleep(2 * time.Millisecond); p.cmd.Process.Signal(syscall.SIGKILL) }()
		}
		if !run(ops[i], i) {
			// No answer: the server died. Restart and retry the same request.
			p.waitExit(10 * time.Second)
			p = startServe(t, data, "--config", cfg, "--snapshot-every", "200ms")
			restarts++
			i--
			continue
		}
		ops[i].effect(expected)
	}
	require.Less(t, killAt, len(ops))

	deadline := time.Now().Add(30 * time.Second)
	var got map[string]string
	for {
		got = map[string]string{}
		for _, c := range customers {
			_, bal, err := p.request("GET", "/v1/customers/"+c+"/balance", "")
			require.NoError(t, err)
			got[c] = bal["balance"].(string)
		}
		want := map[string]string{}
		for _, c := range customers {
			want[c] = strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.1f", expected[c]), "0"), ".")
			if want[c] == "-0" || want[c] == "" {
				want[c] = "0"
			}
		}
		if fmt.Sprint(got) == fmt.Sprint(want) || time.Now().After(deadline) {
			require.Equal(t, want, got, "balances must equal the acknowledged requests:\n%s", p.logs())
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, c := range customers {
		_, q, err := p.request("POST", "/v1/quotas/calls/check", fmt.Sprintf(`{"customer":%q}`, c))
		require.NoError(t, err)
		assert.Equal(t, fmt.Sprint(used[c]), q["used"], "quota use of %s equals the acknowledged commands", c)
	}
	out, err := exec.Command(allotBin, "replay", "--verify", "--nats-url", p.natsURL).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "verify: OK")

	assert.Greater(t, restarts, 0, "the workload must have been interrupted by the SIGKILL")

	// Offline, replay verifies against the stored snapshot.
	require.Equal(t, 0, p.stop(syscall.SIGTERM))
	out, err = exec.Command(allotBin, "replay", "--verify", "--data", data).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "snapshot:")
	assert.Contains(t, string(out), "verify: OK")
	// The rating partitions were rebuilt from the usage stream and compared too.
	assert.Regexp(t, `rating p\d+: sha256:\S+ at usage sequence \d+ \(\d+ events, [1-9]\d* rated items\): same`, string(out))
	assert.NotContains(t, string(out), "DIFFERS")
	assert.NotContains(t, string(out), "not rebuilt")

	// A snapshot that does not match what the ledger says fails verification with exit 1.
	tamperSnapshot(t, data)
	cmd := exec.Command(allotBin, "replay", "--verify", "--data", data)
	out, err = cmd.CombinedOutput()
	require.Error(t, err, "%s", out)
	assert.Equal(t, 1, cmd.ProcessState.ExitCode())
	assert.Contains(t, string(out), "MISMATCH")
}

// tamperSnapshot adds one micro-credit to the first account's debits in the stored snapshot.
func tamperSnapshot(t *testing.T, data string) {
	t.Helper()
	js, closeJS := offlineJetStream(t, data)
	defer closeJS()
	ctx := context.Background()
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	l, err := projector.LoadLedger(ctx, store)
	require.NoError(t, err)
	b, err := json.Marshal(l)
	require.NoError(t, err)
	var snap map[string]any
	require.NoError(t, json.Unmarshal(b, &snap))
	acct := snap["accounts"].([]any)[0].(map[string]any)["account"].(map[string]any)
	acct["debited"] = acct["debited"].(string) + "1"
	b, _ = json.Marshal(snap)
	_, err = store.PutBytes(ctx, projector.SnapshotName, b)
	require.NoError(t, err)
}

// concurrently sends the same request n times, 48 at a time, spread over procs in turn, and
// counts the answers by status (-1 for a request that got no answer).
func concurrently(n int, procs []*proc, method, path, body string) map[int]int {
	var mu sync.Mutex
	codes := map[int]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 48)
	for i := 0; i < n; i++ {
		p := procs[i%len(procs)]
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			status, _, err := p.request(method, path, body)
			if err != nil {
				status = -1
			}
			mu.Lock()
			codes[status]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return codes
}

// tamperRatingSnapshot adds one to the quantity of the first window of the first rating
// partition snapshot that has one.
func tamperRatingSnapshot(t *testing.T, data string) {
	t.Helper()
	js, closeJS := offlineJetStream(t, data)
	defer closeJS()
	ctx := context.Background()
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	infos, err := store.List(ctx)
	require.NoError(t, err)
	for _, in := range infos {
		if !strings.HasPrefix(in.Name, "rating/p") {
			continue
		}
		b, err := store.GetBytes(ctx, in.Name)
		require.NoError(t, err)
		var snap map[string]any
		require.NoError(t, json.Unmarshal(b, &snap))
		accs, _ := snap["accs"].([]any)
		if len(accs) == 0 {
			continue
		}
		w := accs[0].(map[string]any)["windows"].([]any)[0].(map[string]any)
		w["q"] = fmt.Sprint(w["q"]) + "1"
		b, err = json.Marshal(snap)
		require.NoError(t, err)
		_, err = store.PutBytes(ctx, in.Name, b)
		require.NoError(t, err)
		return
	}
	t.Fatal("no rating window to tamper with")
}

// offlineJetStream opens the data directory of a stopped allot on an embedded server of the
// test's own, as the offline tools do.
func offlineJetStream(t *testing.T, data string) (jetstream.JetStream, func()) {
	t.Helper()
	emb, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: data, Port: -2})
	require.NoError(t, err)
	nc, err := nats.Connect("", nats.InProcessServer(emb.Server))
	if err != nil {
		emb.Shutdown()
		require.NoError(t, err)
	}
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js, func() { nc.Close(); emb.Shutdown() }
}
