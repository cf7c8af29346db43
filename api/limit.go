package api

import (
	"fmt"
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/allot-dev/allot/api/problem"
)

// keyLimiter caps each API key's requests per calendar minute in this process: allot's own
// API protected by the same kind of window, headers and problem as the quotas it serves.
// It is per process (a cluster of n API processes admits up to n × limit), which is what a
// guard against runaway clients needs; exact, cluster-wide limits are what quotas are for.
type keyLimiter struct {
	limit int64
	mu    sync.Mutex
	win   map[string]*keyWindow
}

type keyWindow struct {
	start time.Time
	n     int64
}

func newKeyLimiter(perMinute int64) *keyLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &keyLimiter{limit: perMinute, win: map[string]*keyWindow{}}
}

// allow counts one request of key at now and reports the window.
func (l *keyLimiter) allow(key string, now time.Time) (ok bool, remaining int64, reset time.Time) {
	start := now.UTC().Truncate(time.Minute)
	l.mu.Lock()
	defer l.mu.Unlock()
	w := l.win[key]
	if w == nil || !w.start.Equal(start) {
		if len(l.win) > 100_000 { // forget idle keys' windows now and then
			for k, old := range l.win {
				if !old.start.Equal(start) {
					delete(l.win, k)
				}
			}
		}
		w = &keyWindow{start: start}
		l.win[key] = w
	}
	reset = start.Add(time.Minute)
	if w.n >= l.limit {
		return false, 0, reset
	}
	w.n++
	return true, l.limit - w.n, reset
}

func (s *Server) limitKey(w http.ResponseWriter, key string) bool {
	if s.limiter == nil {
		return true
	}
	now := s.o.Now()
	ok, remaining, reset := s.limiter.allow(key, now)
	if ok {
		return true
	}
	secs := int(math.Ceil(reset.Sub(now).Seconds()))
	w.Header().Set("RateLimit-Policy", fmt.Sprintf(`"api";q=%d;w=60`, s.limiter.limit))
	w.Header().Set("RateLimit", fmt.Sprintf(`"api";r=%d;t=%d`, remaining, secs))
	p := problem.New(problem.QuotaExceeded, http.StatusTooManyRequests, fmt.Sprintf("this API key made more than %d requests this minute", s.limiter.limit))
	// limit-scope tells this refusal from a quota's: a quota may be named "api" too, and the
	// gateway must not hand allot's limit on its own key to its callers as theirs.
	p.Extra = map[string]any{"violated-policies": []string{"api"}, "limit": fmt.Sprint(s.limiter.limit), "used": fmt.Sprint(s.limiter.limit), "requested": "1", "resets_at": reset,
		"limit-scope": "api-key"}
	p.RetryAfter = max(secs, 1)
	problem.Write(w, p)
	return false
}
