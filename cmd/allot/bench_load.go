package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The paced latency figures (checks at 20,000 req/s and their baselines) are sent by a
// process of their own, `allot bench-load`, as wrk or any real client would be: a load
// generator inside the measured process shares its Go runtime — its garbage collections stop
// the server's goroutines too, and its goroutines wait in the server's run queue — so the
// server's tail latency carried the generator's. Every paced figure and its baseline use it.

// loadSpec is one paced run: request i is Requests[i%len(Requests)], with every "{n}" in its
// path and body replaced by i%Spread, due at start + i/Rate.
type loadSpec struct {
	Base     string        `json:"base"` // http://host:port
	Auth     string        `json:"auth,omitempty"`
	Requests []loadRequest `json:"requests"`
	Spread   int           `json:"spread"`
	Total    int           `json:"total"`
	Conc     int           `json:"conc"`
	Rate     float64       `json:"rate"`
}

type loadRequest struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	Body   string `json:"body,omitempty"`
	Want   int    `json:"want"`
}

// loadResult is what bench-load prints: every latency, sorted, and the rate achieved.
type loadResult struct {
	Latencies []time.Duration `json:"latencies_ns"`
	Rate      float64         `json:"rate"`
}

// template is a path or body split at its "{n}" placeholders, to fill without formatting.
type template []string

func (t template) append(b []byte, n int) []byte {
	for i, part := range t {
		if i > 0 {
			b = strconv.AppendInt(b, int64(n), 10)
		}
		b = append(b, part...)
	}
	return b
}

// cmdBenchLoad runs one loadSpec read from stdin and prints its loadResult on stdout.
func cmdBenchLoad(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	var spec loadSpec
	if err := json.NewDecoder(stdin).Decode(&spec); err != nil {
		return fmt.Errorf("bench-load: reading the spec: %w", err)
	}
	if len(spec.Requests) == 0 || spec.Spread <= 0 || spec.Conc <= 0 {
		return fmt.Errorf("bench-load: the spec needs requests, a spread and a concurrency")
	}
	h, err := newRawHTTP(spec.Base, spec.Auth, 2*spec.Conc)
	if err != nil {
		return err
	}
	defer h.close()
	type req struct {
		method     string
		path, body template
		hasBody    bool
		want       int
	}
	reqs := make([]req, len(spec.Requests))
	for i, r := range spec.Requests {
		reqs[i] = req{r.Method, strings.Split(r.Path, "{n}"), strings.Split(r.Body, "{n}"), r.Body != "", r.Want}
	}
	bufs := make(chan [2][]byte, spec.Conc) // path and body buffers, one pair per worker in flight
	lat, rate, err := paced(ctx, spec.Conc, spec.Total, spec.Rate, func(i int) error {
		var buf [2][]byte
		select {
		case buf = <-bufs:
		default:
		}
		r := reqs[i%len(reqs)]
		n := i % spec.Spread
		buf[0] = r.path.append(buf[0][:0], n)
		var body []byte
		if r.hasBody {
			buf[1] = r.body.append(buf[1][:0], n)
			body = buf[1]
		}
		err := h.do(r.method, string(buf[0]), body, r.want)
		select {
		case bufs <- buf:
		default:
		}
		return err
	})
	if err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(loadResult{Latencies: lat, Rate: rate})
}

// pacedElsewhere runs spec in a separate `allot bench-load` process (this executable) and
// returns its sorted latencies and the rate it achieved.
func pacedElsewhere(ctx context.Context, spec loadSpec) ([]time.Duration, float64, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, 0, err
	}
	in, err := json.Marshal(spec)
	if err != nil {
		return nil, 0, err
	}
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, self, "bench-load")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("the load generator (%s bench-load): %w: %s", self, err, strings.TrimSpace(errOut.String()))
	}
	var res loadResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, 0, fmt.Errorf("reading the load generator's result: %w", err)
	}
	if len(res.Latencies) != spec.Total {
		return nil, 0, fmt.Errorf("the load generator timed %d requests, want %d", len(res.Latencies), spec.Total)
	}
	return res.Latencies, res.Rate, nil
}

// alternatePaced runs a baseline's and a figure's paced load in rounds alternating between
// them, each in a bench-load process, and returns every latency of each side sorted together,
// with each round's p99 (ms) to show how much one round's tail moved.
func alternatePaced(ctx context.Context, rounds int, baseline, figure loadSpec) (bl, fl []time.Duration, bp99, fp99 []float64, err error) {
	for r := 0; r < max(rounds, 1); r++ {
		lat, _, err := pacedElsewhere(ctx, baseline)
		if err != nil {
			return nil, nil, nil, nil, err
		}
		bl, bp99 = append(bl, lat...), append(bp99, pct(lat, .99))
		if lat, _, err = pacedElsewhere(ctx, figure); err != nil {
			return nil, nil, nil, nil, err
		}
		fl, fp99 = append(fl, lat...), append(fp99, pct(lat, .99))
	}
	slices.Sort(bl)
	slices.Sort(fl)
	return bl, fl, bp99, fp99, nil
}

// msList prints latencies in ms: "0.81, 0.93, 1.20".
func msList(xs []float64) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.FormatFloat(x, 'f', 3, 64)
	}
	return strings.Join(parts, ", ")
}
