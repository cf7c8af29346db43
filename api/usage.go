package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/allot-dev/allot/analytics"
	"github.com/allot-dev/allot/api/problem"
)

func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) {
	if s.o.ClickHouse == nil {
		problem.Write(w, problem.New(problem.AnalyticsNotConfigured, http.StatusServiceUnavailable, "usage analytics need ClickHouse: start allot with --clickhouse (ALLOT_CLICKHOUSE)"))
		return
	}
	qp := r.URL.Query()
	q := analytics.UsageQuery{Scope: scopeFrom(r), Meter: qp.Get("meter"), Window: qp.Get("window"), GroupBy: qp.Get("group_by")}
	if q.Meter != "" {
		m, ok := s.o.Catalog.Meter(q.Scope, q.Meter)
		if !ok {
			problem.Write(w, problem.Fieldf(problem.NotFound, http.StatusNotFound, "meter", "no meter %q in this product and env", q.Meter))
			return
		}
		q.Aggregation, q.ValueProperty = m.Aggregation, m.ValueProperty
	}
	if c := qp.Get("customer"); c != "" {
		var ok bool
		if q.Customer, ok = s.resolveCustomer(w, r, c, "customer"); !ok {
			return
		}
	}
	if q.Window == "" {
		q.Window = "hour"
	}
	now := s.o.Now().UTC()
	q.To, q.From = now, now.Add(-24*time.Hour)
	for _, f := range []struct {
		name string
		dst  *time.Time
	}{{"from", &q.From}, {"to", &q.To}} {
		if v := qp.Get(f.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, f.name, "%s must be RFC 3339, e.g. 2026-05-01T00:00:00Z", f.name))
				return
			}
			*f.dst = t
		}
	}
	if v := qp.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > analytics.MaxUsageRows {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "limit", "limit must be a whole number from 1 to %d", analytics.MaxUsageRows))
			return
		}
		q.Limit = n
	}
	if c := qp.Get("cursor"); c != "" {
		cur, ok := parseUsageCursor(c)
		if !ok {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor is not one this API gave out"))
			return
		}
		if cur.Query != usageQueryID(q) {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor pages another query: keep meter, customer, window and group_by as they were"))
			return
		}
		// The pages of one answer cover one range: from and to default to the first page's
		// (the default to is now, which moves between pages), and given, must be the same.
		from, to := time.Unix(0, cur.From).UTC(), time.Unix(0, cur.To).UTC()
		if (qp.Get("from") != "" && !q.From.Equal(from)) || (qp.Get("to") != "" && !q.To.Equal(to)) {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor pages from %s to %s: leave from and to out, or give those", from.Format(time.RFC3339Nano), to.Format(time.RFC3339Nano)))
			return
		}
		q.From, q.To = from, to
		q.After = &analytics.UsagePosition{WindowStart: time.Unix(cur.Window, 0).UTC(), Group: cur.Group}
	}
	if _, ok := s.o.Catalog.Meter(q.Scope, q.Meter); !ok && q.Meter != "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "meter", "no meter %q in this product and env", q.Meter))
		return
	}
	// Bounded here: the API's HTTP fast path does not end a request's context when its caller
	// hangs up (internal/leanhttp), so nothing else would stop a query nobody waits for.
	qctx, cancel := context.WithTimeout(r.Context(), s.o.UsageQueryTimeout)
	defer cancel()
	rows, more, err := analytics.QueryUsage(qctx, s.o.ClickHouse, q)
	var qe *analytics.QueryError
	switch {
	case errors.As(err, &qe):
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, qe.Field, "%s", qe.Msg))
		return
	case err != nil && errors.Is(qctx.Err(), context.DeadlineExceeded):
		// Retrying is safe (a read), but the same query will likely run as long again.
		p := problem.New(problem.Unavailable, http.StatusServiceUnavailable, "the usage query ran longer than "+s.o.UsageQueryTimeout.String()+"; narrow it with from, to, meter or customer")
		p.RetryAfter = 1
		problem.Write(w, p)
		return
	case err != nil:
		s.o.Log.Error("usage query", "err", err)
		p := problem.New(problem.Unavailable, http.StatusServiceUnavailable, "analytics: "+err.Error())
		p.RetryAfter = 1
		problem.Write(w, p)
		return
	}
	if rows == nil {
		rows = []analytics.UsageRow{}
	}
	var next any
	if more {
		last := rows[len(rows)-1]
		next = usageCursor{Window: last.WindowStart.Unix(), Group: last.Customer + last.Group, From: q.From.UnixNano(), To: q.To.UnixNano(), Query: usageQueryID(q)}.String()
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": rows, "next_cursor": next, "meter": q.Meter, "window": q.Window, "from": q.From.UTC(), "to": q.To.UTC()})
}

// usageCursor is where a page of a usage answer ends: the last row's window and customer or
// group, the range the pages cover, and which query they page.
type usageCursor struct {
	Window int64  `json:"w"` // Unix seconds: windows start on whole minutes
	Group  string `json:"g,omitempty"`
	From   int64  `json:"f"` // Unix nanoseconds
	To     int64  `json:"t"`
	Query  string `json:"q"`
}

func (c usageCursor) String() string { return encodeCursor(c) }

func parseUsageCursor(s string) (usageCursor, bool) {
	var c usageCursor
	if !decodeCursor(s, &c) || c.Query == "" || c.From >= c.To {
		return usageCursor{}, false
	}
	return c, true
}

// usageQueryID names what a usage query asks, apart from its range and page: a cursor from
// one query used on another would start its answer at a row of the other.
func usageQueryID(q analytics.UsageQuery) string {
	sum := sha256.Sum256([]byte(q.Scope.String() + "\x00" + q.Meter + "\x00" + q.Customer + "\x00" + q.Window + "\x00" + q.GroupBy))
	return hex.EncodeToString(sum[:8])
}
