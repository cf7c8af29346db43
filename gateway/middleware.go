package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
)

// Client calls an allot server's quota endpoints.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client // default: 2 s timeout
}

// Decision is allot's answer to counting a request against a route's policies.
type Decision struct {
	Allowed bool
	// The RateLimit headers allot sent, to pass on to the caller.
	Policy, State string
	// Windows is the start of the window each quota was counted in.
	Windows map[string]time.Time
	// Problem is allot's problem body when it refused (429), to pass on as is, with its
	// Retry-After.
	Problem    []byte
	RetryAfter int
	Status     int
}

// ErrUnavailable means allot could not answer.
var ErrUnavailable = errors.New("allot unavailable")

// ErrCallerRefused means allot refused the caller's identity as a customer id: the request is
// refused, whether its policies fail open or not.
var ErrCallerRefused = errors.New("allot refused the caller's identity")

// CustomerFor is the allot customer id the gateway counts a caller's identity under: the
// identity itself, unless allot could not take it as a customer's own id — over
// events.MaxCustomerLen bytes, "." or ".." (a path segment), or shaped like allot's UUIDs of
// customers, which allot reads as one (a new caller's was a 404, which a fail-open policy let
// through uncounted) — which is counted under "caller-" and the first 32 hex digits of its
// SHA-256. An identity that starts with "caller-" is hashed too, so no caller can name itself
// as another's hash and spend its quota.
func CustomerFor(identity string) string {
	if identity != "" && len(identity) <= events.MaxCustomerLen && identity != "." && identity != ".." &&
		!events.LooksLikeCustomerID(identity) && !strings.HasPrefix(identity, "caller-") {
		return identity
	}
	sum := sha256.Sum256([]byte(identity))
	return "caller-" + hex.EncodeToString(sum[:16])
}

// IncrementAll counts one use of each quota by customer, all or nothing
// (POST /v1/customers/{id}/quotas/increment). Allowed is false, with allot's 429 problem in
// Problem and its RateLimit headers in Policy and State, when any quota has no room.
func (c *Client) IncrementAll(ctx context.Context, customer string, quotas []string) (Decision, error) {
	type item struct {
		Key string `json:"key"`
	}
	items := make([]item, len(quotas))
	for i, q := range quotas {
		items[i] = item{q}
	}
	body, _ := json.Marshal(map[string]any{"quotas": items})
	resp, b, err := c.post(ctx, "/v1/customers/"+url.PathEscape(customer)+"/quotas/increment", body)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{Policy: resp.Header.Get("RateLimit-Policy"), State: resp.Header.Get("RateLimit"), Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusOK:
		d.Allowed = true
		var counted struct {
			Quotas []struct {
				Quota       string    `json:"quota"`
				WindowStart time.Time `json:"window_start"`
			} `json:"quotas"`
		}
		if json.Unmarshal(b, &counted) == nil {
			d.Windows = map[string]time.Time{}
			for _, q := range counted.Quotas {
				d.Windows[q.Quota] = q.WindowStart
			}
		}
		return d, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusUnprocessableEntity:
		// A refusal names the quotas it refused on. One from allot's own per-key request limit
		// (limit-scope "api-key"), or naming none of these, is not about the caller: the
		// caller must not hear it as its quota, and it fails open or closed like an outage.
		var refused struct {
			Violated []string `json:"violated-policies"`
			Scope    string   `json:"limit-scope"`
		}
		if json.Unmarshal(b, &refused) != nil || refused.Scope == "api-key" ||
			!slices.ContainsFunc(refused.Violated, func(v string) bool { return slices.Contains(quotas, v) }) {
			return d, fmt.Errorf("%w: %s not about quotas %v (allot's own request limit for this key?): %s", ErrUnavailable, resp.Status, quotas, b)
		}
		d.Problem = b
		if resp.StatusCode == http.StatusTooManyRequests {
			if d.RetryAfter, err = strconv.Atoi(resp.Header.Get("Retry-After")); err != nil {
				d.RetryAfter = 1
			}
		}
		return d, nil
	case resp.StatusCode >= 500:
		return d, fmt.Errorf("%w: %s", ErrUnavailable, resp.Status)
	case resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusNotFound:
		// About the caller (CustomerFor leaves none such, but a fail-open policy must never
		// read a refusal of the caller as allot being down: that let the caller through).
		var p struct {
			Field string `json:"field"`
		}
		if json.Unmarshal(b, &p) == nil && p.Field == "id" {
			return d, fmt.Errorf("%w: %s: %s", ErrCallerRefused, resp.Status, b)
		}
		return d, fmt.Errorf("allot answered %s for quotas %v: %s", resp.Status, quotas, b)
	default:
		return d, fmt.Errorf("allot answered %s for quotas %v: %s", resp.Status, quotas, b)
	}
}

// Adjust changes customer's use of quota by amount (negative gives use back) in the window
// holding at (zero: the current one).
func (c *Client) Adjust(ctx context.Context, quota, customer, amount string, at time.Time) error {
	m := map[string]any{"customer": customer, "amount": amount}
	if !at.IsZero() {
		m["at"] = at
	}
	body, _ := json.Marshal(m)
	resp, b, err := c.post(ctx, "/v1/quotas/"+url.PathEscape(quota)+"/adjust", body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("allot answered %s adjusting quota %q: %s", resp.Status, quota, b)
	}
	return nil
}

// post sends a JSON body to allot and reads the answer (at most 64 KiB).
func (c *Client) post(ctx context.Context, path string, body []byte) (*http.Response, []byte, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+path, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	return resp, b, nil
}

// Policy is one quota applied to a route.
type Policy struct {
	Quota    string
	FailOpen bool // when allot is unreachable: let requests through (true) or answer 503
}

// Options configure the middleware.
type Options struct {
	Client   *Client
	Identify Identify
	Policies []Policy // counted together before the handler, all or nothing; headers in this order
	// Count says which handler statuses use quota; default 200–299 and 101 (an upgrade).
	Count func(status int) bool
	// Unidentified callers get 401 unless AllowAnonymous.
	AllowAnonymous bool
	OnError        func(error) // optional: errors talking to allot
}

// Middleware returns the enforcing middleware.
func Middleware(o Options) func(http.Handler) http.Handler {
	count := o.Count
	if count == nil {
		// 2xx, and a switch of protocols: an upgraded connection (a WebSocket session) is
		// served, and would otherwise be free however many a caller opened.
		count = func(s int) bool { return s >= 200 && s < 300 || s == http.StatusSwitchingProtocols }
	}
	report := o.OnError
	if report == nil {
		report = func(error) {}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			identity, ok := o.Identify(r)
			if !ok {
				if o.AllowAnonymous {
					next.ServeHTTP(w, r)
					return
				}
				writeProblem(w, http.StatusUnauthorized, problem.Unauthenticated, "the request does not say who is calling", 0)
				return
			}
			caller := CustomerFor(identity)
			// Count first, all policies at once and all or nothing: exact however many
			// requests run at the same time (checking first and counting after let every
			// request of a burst pass the check). An answer the handler gives that does not
			// count (a 5xx, by default) gives the use back.
			quotas, closed := make([]string, len(o.Policies)), false
			for i, p := range o.Policies {
				quotas[i], closed = p.Quota, closed || !p.FailOpen
			}
			var d Decision
			counted := false
			if len(quotas) > 0 {
				var err error
				// Not cancelled when the caller hangs up: a cancelled call reads as allot being
				// unavailable, and a fail-open policy would then let the request through
				// uncounted. A caller gone by the answer gets its use back below.
				d, err = o.Client.IncrementAll(context.WithoutCancel(r.Context()), caller, quotas)
				switch {
				case errors.Is(err, ErrCallerRefused):
					report(err)
					writeProblem(w, http.StatusForbidden, problem.Forbidden, "the caller's identity cannot be counted", 0)
					return
				case err != nil:
					report(err)
					if closed {
						writeProblem(w, http.StatusServiceUnavailable, problem.Unavailable, "allot cannot count quotas "+strings.Join(quotas, ", "), 1)
						return
					}
					d = Decision{} // every policy fails open: through, uncounted, no headers
				case !d.Allowed:
					setRateLimit(w.Header(), d.Policy, d.State)
					if d.Status == http.StatusTooManyRequests { // a 422 can never be admitted: no time to wait
						w.Header().Set("Retry-After", strconv.Itoa(max(d.RetryAfter, 1)))
					}
					w.Header().Set("Content-Type", "application/problem+json")
					w.WriteHeader(d.Status)
					w.Write(d.Problem)
					return
				default:
					counted = true
				}
			}
			// Given back before the response completes, so the caller's next request sees it;
			// in the window it was counted in, even if a new one began.
			giveBack := func() {
				ctx := context.WithoutCancel(r.Context())
				for _, q := range quotas {
					if err := o.Client.Adjust(ctx, q, caller, "-1", d.Windows[q]); err != nil {
						report(err)
					}
				}
			}
			if counted && r.Context().Err() != nil {
				giveBack() // the caller hung up while it was counted: nothing is served
				return
			}
			rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			if counted {
				// A handler that panics before it answers answers nothing (net/http aborts the
				// connection): the use is given back. One that had answered (a proxy whose caller
				// hung up mid-body panics with http.ErrAbortHandler) served what it answered: it
				// keeps the use if that status counts, and gives it back if not (a 503 cut short
				// is still a 503).
				defer func() {
					if p := recover(); p != nil {
						if !rec.wrote || !count(rec.status) {
							giveBack()
						}
						panic(p)
					}
				}()
			}
			if d.Policy != "" {
				// Set as the handler's status is written: an answer that is not counted tells
				// the caller the use it gives back.
				rec.beforeHeader = func(status int) {
					state := d.State
					if !count(status) {
						state = withRemaining(state, +1)
					}
					setRateLimit(w.Header(), d.Policy, state)
				}
			}
			next.ServeHTTP(rec, r)
			if !rec.wrote {
				rec.WriteHeader(http.StatusOK) // what net/http does for a handler that wrote nothing
			}
			if !counted || count(rec.status) {
				return
			}
			giveBack()
		})
	}
}

func setRateLimit(h http.Header, policy, state string) {
	if policy != "" {
		h.Set("RateLimit-Policy", policy)
		h.Set("RateLimit", state)
	}
}

// withRemaining is a RateLimit field (`"a";r=3;t=60, "b";r=0;t=60`) with delta added to every
// item's remaining (never below 0).
func withRemaining(field string, delta int64) string {
	items := strings.Split(field, ", ")
	for k, item := range items {
		i := strings.Index(item, ";r=")
		if i < 0 {
			continue
		}
		j := i + 3
		for j < len(item) && item[j] >= '0' && item[j] <= '9' {
			j++
		}
		n, err := strconv.ParseInt(item[i+3:j], 10, 64)
		if err != nil {
			continue
		}
		items[k] = item[:i+3] + strconv.FormatInt(max(n+delta, 0), 10) + item[j:]
	}
	return strings.Join(items, ", ")
}

type statusWriter struct {
	http.ResponseWriter
	status       int
	wrote        bool
	beforeHeader func(status int) // once, before the status is written
}

func (s *statusWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		s.ResponseWriter.WriteHeader(code) // interim (100 Continue, 103 Early Hints): the answer is still to come
		return
	}
	if !s.wrote {
		s.status, s.wrote = code, true
		if s.beforeHeader != nil {
			s.beforeHeader(code)
		}
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets streaming handlers work through the middleware. A flush before anything was
// written sends the headers (an implicit 200): they are decided first, as Write does.
func (s *statusWriter) Flush() {
	if !s.wrote {
		s.WriteHeader(http.StatusOK)
	}
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets a handler take the connection over (a protocol upgrade, a WebSocket): its answer
// is then the switch of protocols, whatever it writes on the connection.
func (s *statusWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(s.ResponseWriter).Hijack()
	if err == nil && !s.wrote {
		s.status, s.wrote = http.StatusSwitchingProtocols, true
	}
	return conn, rw, err
}

// Unwrap gives http.ResponseController the writer underneath (deadlines, full duplex).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func writeProblem(w http.ResponseWriter, status int, kind, detail string, retryAfter int, extra ...any) {
	m := map[string]any{"type": problem.TypeBase + kind, "title": problem.Title(kind), "status": status, "detail": detail}
	for i := 0; i+1 < len(extra); i += 2 {
		m[extra[i].(string)] = extra[i+1]
	}
	b, _ := json.Marshal(m)
	w.Header().Set("Content-Type", "application/problem+json")
	if retryAfter > 0 {
		w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
	}
	w.WriteHeader(status)
	w.Write(b)
}
