package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"
)

// The baseline of the quota figure: what teams usually build instead — a small HTTP service
// doing check-and-increment in Redis with a Lua script — on the same machine, at the same
// concurrency, in the same run.

const redisLua = `local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then return -1 end
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
if n == tonumber(ARGV[1]) then redis.call('EXPIRE', KEYS[1], ARGV[3]) end
return n`

// respConn is a minimal RESP client connection: enough for SCRIPT LOAD, EVALSHA and GET.
type respConn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

func (c *respConn) do(args ...string) (any, error) {
	fmt.Fprintf(c.w, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(c.w, "$%d\r\n%s\r\n", len(a), a)
	}
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	if len(line) < 3 {
		return nil, errors.New("short RESP reply")
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, errors.New(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, _ := strconv.Atoi(body)
		if n < 0 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	}
	return nil, fmt.Errorf("unexpected RESP reply %q", line)
}

// redisQuotaService starts redis-server and an HTTP service in front of it.
func redisQuotaService(ctx context.Context, conns int) (url string, stop func(), err error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", nil, fmt.Errorf("bench quota compares with Redis: install redis-server (apt-get install -y redis-server): %w", err)
	}
	dir, err := os.MkdirTemp("", "allot-bench-redis-")
	if err != nil {
		return "", nil, err
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.CommandContext(ctx, bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	cleanup := func() { cmd.Process.Kill(); cmd.Wait(); os.RemoveAll(dir) }
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pool := make(chan *respConn, conns)
	deadline := time.Now().Add(10 * time.Second)
	for len(pool) < conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if time.Now().After(deadline) {
				cleanup()
				return "", nil, fmt.Errorf("redis-server did not start: %w", err)
			}
			time.Sleep(20 * time.Millisecond)
			continue
		}
		pool <- &respConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c)}
	}
	first := <-pool
	shaAny, err := first.do("SCRIPT", "LOAD", redisLua)
	pool <- first
	if err != nil {
		cleanup()
		return "", nil, err
	}
	sha := shaAny.(string)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := <-pool
		defer func() { pool <- c }()
		key := "q:" + r.URL.Query().Get("customer")
		if r.URL.Path == "/check" {
			v, err := c.do("GET", key)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, `{"used":%q}`, fmt.Sprint(v))
			return
		}
		v, err := c.do("EVALSHA", sha, "1", key, "1", "1000000000000", "3600")
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		if v.(int64) < 0 {
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		fmt.Fprintf(w, `{"used":%d}`, v.(int64))
	}))
	return srv.URL, func() {
		srv.Close()
		for len(pool) > 0 {
			(<-pool).c.Close()
		}
		cleanup()
	}, nil
}

// alternate measures a baseline and a figure in rounds alternating between them, n requests
// each, and returns every latency of each side and the median of each side's rates: on a noisy
// machine one round of each differed by ±15% from run to run.
func alternate(ctx context.Context, rounds, conc, n int, baseline, figure func(i int) error) (bl, fl []time.Duration, brate, frate float64, err error) {
	var brates, frates []float64
	for r := 0; r < rounds; r++ {
		lat, rate, err := latencies(ctx, conc, n, baseline)
		if err != nil {
			return nil, nil, 0, 0, err
		}
		bl, brates = append(bl, lat...), append(brates, rate)
		if lat, rate, err = latencies(ctx, conc, n, figure); err != nil {
			return nil, nil, 0, 0, err
		}
		fl, frates = append(fl, lat...), append(frates, rate)
	}
	// Each round's latencies come sorted; their concatenation does not (pct reads a sorted
	// slice: unsorted, its "p99" was about the last round's p97).
	slices.Sort(bl)
	slices.Sort(fl)
	return bl, fl, median(brates), median(frates), nil
}

func benchQuota(ctx context.Context, o benchOptions, progress io.Writer) ([]benchResult, error) {
	conc := 16
	redisURL, stopRedis, err := redisQuotaService(ctx, conc)
	if err != nil {
		return nil, err
	}
	defer stopRedis()
	n, done, err := benchNode(ctx, true)
	if err != nil {
		return nil, err
	}
	defer done()
	base := n.httpURL()
	c := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: conc * 2, MaxConnsPerHost: conc * 2}}
	if err := httpDo(c, "PUT", base+"/v1/quotas/bench", `{"meter":"requests","limit":"1000000000000","period":{"unit":"hour"}}`, 200); err != nil {
		return nil, err
	}
	if err := benchWebhooks(o, base); err != nil {
		return nil, err
	}
	rc, err := newRawHTTP(base, "Bearer ak_bench_0123456789abcdef", 4*conc)
	if err != nil {
		return nil, err
	}
	defer rc.close()
	rr, err := newRawHTTP(redisURL, "", 4*conc)
	if err != nil {
		return nil, err
	}
	defer rr.close()
	const customers = 1000
	total := max(o.events/20, 2000)
	// A warm-up round on each side, not measured: both then run on connections, heaps and
	// customers' state that are already there, as a service in production does. Without it
	// whichever side ran first paid for first-touch page faults and allot for creating every
	// customer's account.
	for _, warm := range []func(i int) error{
		func(i int) error { return rr.do("POST", fmt.Sprintf("/increment?customer=c%d", i%customers), nil, 200) },
		func(i int) error {
			return rc.do("POST", "/v1/quotas/bench/increment", fmt.Appendf(nil, `{"customer":"c%d"}`, i%customers), 200)
		},
	} {
		if _, _, err := latencies(ctx, conc, max(total, customers), warm); err != nil {
			return nil, err
		}
	}
	redisInc, inc, redisIncRate, incRate, err := alternate(ctx, o.rounds, conc, total, func(i int) error {
		return rr.do("POST", fmt.Sprintf("/increment?customer=c%d", i%customers), nil, 200)
	}, func(i int) error {
		return rc.do("POST", "/v1/quotas/bench/increment", fmt.Appendf(nil, `{"customer":"c%d"}`, i%customers), 200)
	})
	if err != nil {
		return nil, err
	}
	redisChk, redisChkRate, err := latencies(ctx, conc, total, func(i int) error {
		return rr.do("POST", fmt.Sprintf("/check?customer=c%d", i%customers), nil, 200)
	})
	if err != nil {
		return nil, err
	}
	chk, chkRate, err := latencies(ctx, conc, total, func(i int) error {
		return rc.do("POST", "/v1/quotas/bench/check", fmt.Appendf(nil, `{"customer":"c%d"}`, i%customers), 200)
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench quota: %d requests a round at concurrency %d: increment %.0f/s p99 %.3f ms (redis+lua service %.0f/s p99 %.3f ms); check %.0f/s p99 %.3f ms (redis GET service %.0f/s p99 %.3f ms)\n",
		total, conc, incRate, pct(inc, .99), redisIncRate, pct(redisInc, .99), chkRate, pct(chk, .99), redisChkRate, pct(redisChk, .99))
	// The check target is stated at 20,000 req/s: both services paced there, in --rounds
	// alternating rounds of five seconds each at the default --events.
	const checkRateTarget = 20000
	pacedTotal := max(total, min(o.events, 5*checkRateTarget))
	redisChkAt, chkAt, redisP99s, chkP99s, err := alternatePaced(ctx, o.rounds,
		loadSpec{Base: redisURL, Spread: customers, Total: pacedTotal, Conc: 64, Rate: checkRateTarget,
			Requests: []loadRequest{{Method: "POST", Path: "/check?customer=c{n}", Want: 200}}},
		loadSpec{Base: base, Auth: "Bearer ak_bench_0123456789abcdef", Spread: customers, Total: pacedTotal, Conc: 64, Rate: checkRateTarget,
			Requests: []loadRequest{{Method: "POST", Path: "/v1/quotas/bench/check", Body: `{"customer":"c{n}"}`, Want: 200}}})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench quota: checks paced at %d req/s, %d rounds of %d: p50 %.3f ms p99 %.3f ms (rounds: %s) (redis GET service p50 %.3f ms p99 %.3f ms (rounds: %s))\n",
		checkRateTarget, max(o.rounds, 1), pacedTotal, pct(chkAt, .5), pct(chkAt, .99), msList(chkP99s), pct(redisChkAt, .5), pct(redisChkAt, .99), msList(redisP99s))
	// One busy customer: every request for the same customer (one Redis key), where allot's
	// appends for a customer are serialized and group commit batches them.
	if err := httpDo(c, "PUT", base+"/v1/quotas/hot", `{"meter":"requests","limit":"1000000000000","period":{"unit":"hour"}}`, 200); err != nil {
		return nil, err
	}
	redisHot, hot, redisHotRate, hotRate, err := alternate(ctx, o.rounds, conc, total, func(i int) error {
		return rr.do("POST", "/increment?customer=hot", nil, 200)
	}, func(i int) error {
		return rc.do("POST", "/v1/quotas/hot/increment", []byte(`{"customer":"hot"}`), 200)
	})
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "bench quota: one customer, %d requests a round at concurrency %d: increment %.0f/s p99 %.3f ms (redis+lua service, one key, %.0f/s p99 %.3f ms)\n",
		total, conc, hotRate, pct(hot, .99), redisHotRate, pct(redisHot, .99))
	return []benchResult{
		{Name: "quota_increment_throughput", Value: incRate, Unit: "req/s", BaselineName: "redis_lua_service_throughput", BaselineValue: redisIncRate, Ratio: incRate / redisIncRate},
		{Name: "quota_increment_p99", Value: pct(inc, .99), Unit: "ms", BaselineName: "redis_lua_service_p99", BaselineValue: pct(redisInc, .99), Ratio: pct(inc, .99) / pct(redisInc, .99)},
		{Name: "quota_check_p99", Value: pct(chk, .99), Unit: "ms", BaselineName: "redis_get_service_p99", BaselineValue: pct(redisChk, .99), Ratio: pct(chk, .99) / pct(redisChk, .99)},
		{Name: "quota_check_throughput", Value: chkRate, Unit: "req/s", BaselineName: "redis_get_service_throughput", BaselineValue: redisChkRate, Ratio: chkRate / redisChkRate},
		{Name: "quota_check_p99_at_20k_rps", Value: pct(chkAt, .99), Unit: "ms", BaselineName: "redis_get_service_p99_at_20k_rps", BaselineValue: pct(redisChkAt, .99), Ratio: pct(chkAt, .99) / pct(redisChkAt, .99)},
		{Name: "quota_increment_one_customer_throughput", Value: hotRate, Unit: "req/s", BaselineName: "redis_lua_service_one_key_throughput", BaselineValue: redisHotRate, Ratio: hotRate / redisHotRate},
		{Name: "quota_increment_one_customer_p99", Value: pct(hot, .99), Unit: "ms", BaselineName: "redis_lua_service_one_key_p99", BaselineValue: pct(redisHot, .99), Ratio: pct(hot, .99) / pct(redisHot, .99)},
	}, nil
}
