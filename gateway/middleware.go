package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Client calls an allot server's quota endpoints.
type Client struct {
	BaseURL string // e.g. http://127.0.0.1:8080
	APIKey  string
	HTTP    *http.Client // default: 2 s timeout
}

// Decision is allot's answer for one policy.
type Decision struct {
	Allowed     bool      `json:"allowed"`
	Used        string    `json:"used"`
	Limit       string    `json:"limit"`
	Remaining   string    `json:"remaining"`
	WindowStart time.Time `json:"window_start"`
	ResetsAt    time.Time `json:"resets_at"`
	// The RateLimit headers allot sent, to pass on to the caller.
	Policy, State string
	// Problem is allot's problem body when it refused (429), to pass on as is.
	Problem []byte
	Status  int
}

// ErrUnavailable means allot could not answer.
var ErrUnavailable = errors.New("allot unavailable")

func (c *Client) call(ctx context.Context, path, quota, customer string) (Decision, error) {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 2 * time.Second}
	}
	body, _ := json.Marshal(map[string]string{"customer": customer})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(c.BaseURL, "/")+"/v1/quotas/"+quota+"/"+path, bytes.NewReader(body))
	if err != nil {
		return Decision{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return Decision{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	d := Decision{Policy: resp.Header.Get("RateLimit-Policy"), State: resp.Header.Get("RateLimit"), Status: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusOK:
		if err := json.Unmarshal(b, &d); err != nil {
			return d, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
		return d, nil
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusUnprocessableEntity:
		d.Problem = b
		return d, nil
	case resp.StatusCode >= 500:
		return d, fmt.Errorf("%w: %s", ErrUnavailable, resp.Status)
	default:
		return d, fmt.Errorf("allot answered %s for quota %q: %s", resp.Status, quota, b)
	}
}

// Check asks whether one more use of quota by customer would be allowed (changes nothing).
func (c *Client) Check(ctx context.Context, quota, customer string) (Decision, error) {
	return c.call(ctx, "check", quota, customer)
}

// Increment counts one use of quota by customer.
func (c *Client) Increment(ctx context.Context, quota, customer string) (Decision, error) {
	return c.call(ctx, "increment", quota, customer)
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
	Policies []Policy // checked in order; the first exhausted one refuses the request
	// Count says which handler statuses use quota; default 200–299.
	Count func(status int) bool
	// Unidentified callers get 401 unless AllowAnonymous.
	AllowAnonymous bool
	OnError        func(error) // optional: errors talking to allot
}

// Middleware returns the enforcing middleware.
func Middleware(o Options) func(http.Handler) http.Handler {
	count := o.Count
	if count == nil {
		count = func(s int) bool { return s >= 200 && s < 300 }
	}
	report := o.OnError
	if report == nil {
		report = func(error) {}
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			caller, ok := o.Identify(r)
			if !ok {
				if o.AllowAnonymous {
					next.ServeHTTP(w, r)
					return
				}
				writeProblem(w, http.StatusUnauthorized, "unauthenticated", "Unauthenticated", "the request does not say who is calling", 0)
				return
			}
			var policyHdr, stateHdr []string
			var live []Policy // the policies allot answered for: they are counted after
			for _, p := range o.Policies {
				d, err := o.Client.Check(r.Context(), p.Quota, caller)
				if err != nil {
					report(err)
					if p.FailOpen {
						continue
					}
					writeProblem(w, http.StatusServiceUnavailable, "unavailable", "Quota service unavailable", "quota "+p.Quota+" cannot be checked", 1)
					return
				}
				if d.Policy != "" {
					policyHdr, stateHdr = append(policyHdr, d.Policy), append(stateHdr, d.State)
				}
				if !d.Allowed {
					w.Header().Set("RateLimit-Policy", strings.Join(policyHdr, ", "))
					w.Header().Set("RateLimit", strings.Join(stateHdr, ", "))
					retry := int(time.Until(d.ResetsAt).Seconds()) + 1
					writeProblem(w, http.StatusTooManyRequests, "quota-exceeded", "Quota exceeded",
						fmt.Sprintf("%s: %s used of %s; resets at %s", p.Quota, d.Used, d.Limit, d.ResetsAt.Format(time.RFC3339)), max(retry, 1),
						"violated-policies", []string{p.Quota}, "limit", d.Limit, "used", d.Used, "requested", "1", "resets_at", d.ResetsAt)
					return
				}
				live = append(live, p)
			}
			rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
			if len(policyHdr) > 0 {
				// Set as the handler's status is written: an answer that will be counted
				// tells the caller what remains after it, not before.
				rec.beforeHeader = func(status int) {
					states := stateHdr
					if count(status) {
						states = make([]string, len(stateHdr))
						for i, st := range stateHdr {
							states[i] = afterOneUse(st)
						}
					}
					w.Header().Set("RateLimit-Policy", strings.Join(policyHdr, ", "))
					w.Header().Set("RateLimit", strings.Join(states, ", "))
				}
			}
			next.ServeHTTP(rec, r)
			if !rec.wrote {
				rec.WriteHeader(http.StatusOK) // what net/http does for a handler that wrote nothing
			}
			if !count(rec.status) {
				return
			}
			// Count before the response completes, so the caller's next request sees it (a
			// client that gets its answer before the count would be a way around the limit).
			ctx := context.WithoutCancel(r.Context())
			for _, p := range live {
				if _, err := o.Client.Increment(ctx, p.Quota, caller); err != nil {
					report(err)
				}
			}
		})
	}
}

// afterOneUse is a RateLimit item (`"name";r=3;t=60`) with one unit less remaining.
func afterOneUse(item string) string {
	i := strings.Index(item, ";r=")
	if i < 0 {
		return item
	}
	j := i + 3
	for j < len(item) && item[j] >= '0' && item[j] <= '9' {
		j++
	}
	n, err := strconv.ParseInt(item[i+3:j], 10, 64)
	if err != nil {
		return item
	}
	return item[:i+3] + strconv.FormatInt(max(n-1, 0), 10) + item[j:]
}

type statusWriter struct {
	http.ResponseWriter
	status       int
	wrote        bool
	beforeHeader func(status int) // once, before the status is written
}

func (s *statusWriter) WriteHeader(code int) {
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

// Flush lets streaming handlers work through the middleware.
func (s *statusWriter) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func writeProblem(w http.ResponseWriter, status int, kind, title, detail string, retryAfter int, extra ...any) {
	m := map[string]any{"type": "https://allot.dev/problems/" + kind, "title": title, "status": status, "detail": detail}
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
