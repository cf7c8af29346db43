package api

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/allot-dev/allot/analytics"
	"github.com/allot-dev/allot/api/problem"
)

func (s *Server) getUsage(w http.ResponseWriter, r *http.Request) {
	if s.o.ClickHouse == nil {
		problem.Write(w, problem.New(problem.AnalyticsNotConfigured, http.StatusServiceUnavailable, "Analytics not configured",
			"usage analytics need ClickHouse: start allot with --clickhouse (ALLOT_CLICKHOUSE)"))
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
	if _, ok := s.o.Catalog.Meter(q.Scope, q.Meter); !ok && q.Meter != "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "meter", "no meter %q in this product and env", q.Meter))
		return
	}
	// Bounded here: the API's HTTP fast path does not end a request's context when its caller
	// hangs up (internal/leanhttp), so nothing else would stop a query nobody waits for.
	qctx, cancel := context.WithTimeout(r.Context(), s.o.UsageQueryTimeout)
	defer cancel()
	rows, err := analytics.QueryUsage(qctx, s.o.ClickHouse, q)
	var qe *analytics.QueryError
	switch {
	case errors.As(err, &qe):
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, qe.Field, "%s", qe.Msg))
		return
	case err != nil && errors.Is(qctx.Err(), context.DeadlineExceeded):
		problem.Write(w, problem.New(problem.Unavailable, http.StatusServiceUnavailable, "Analytics query too long",
			"the usage query ran longer than "+s.o.UsageQueryTimeout.String()+"; narrow it with from, to, meter or customer"))
		return
	case err != nil:
		s.o.Log.Error("usage query", "err", err)
		p := problem.New(problem.Unavailable, http.StatusServiceUnavailable, "Analytics unavailable", err.Error())
		p.RetryAfter = 1
		problem.Write(w, p)
		return
	}
	if rows == nil {
		rows = []analytics.UsageRow{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": rows, "meter": q.Meter, "window": q.Window, "from": q.From.UTC(), "to": q.To.UTC()})
}
