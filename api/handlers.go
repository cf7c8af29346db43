package api

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/ingest"
)

var healthzBody = []byte(`{"status":"ok"}` + "\n")

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	w.Write(healthzBody)
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{}
	ready := true
	if s.o.NC == nil || !s.o.NC.IsConnected() {
		checks["nats"], ready = "not connected", false
	} else if _, err := s.o.JS.AccountInfo(ctx); err != nil {
		checks["nats"], ready = "jetstream: "+err.Error(), false
	} else {
		checks["nats"] = "ok"
	}
	if s.o.ClickHouse != nil {
		if err := s.o.ClickHouse.Ping(ctx); err != nil {
			checks["clickhouse"], ready = err.Error(), false
		} else {
			checks["clickhouse"] = "ok"
		}
	} else {
		checks["clickhouse"] = "not configured"
	}
	if !ready {
		p := problem.New(problem.Unavailable, http.StatusServiceUnavailable, "not ready: a dependency is unreachable (see checks)")
		p.Extra, p.RetryAfter = map[string]any{"checks": checks}, 1
		problem.Write(w, p)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

func (s *Server) metrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.o.Metrics.WriteTo(w)
}

func (s *Server) postEvents(w http.ResponseWriter, r *http.Request) {
	if ingest.IsBinaryCloudEvent(r.Header) {
		s.postBinaryCloudEvent(w, r)
		return
	}
	media, ok := ingest.MediaKind(r.Header.Get("Content-Type"))
	if !ok {
		problem.Write(w, problem.New(problem.UnsupportedMediaType, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type %q is not accepted; use %s, %s or %s", r.Header.Get("Content-Type"), ingest.MediaJSON, ingest.MediaCloudEvent, ingest.MediaCloudEventBatch)))
		return
	}
	body, p := s.readBody(w, r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	s.ingest(w, r, media, body)
}

func (s *Server) postBinaryCloudEvent(w http.ResponseWriter, r *http.Request) {
	body, p := s.readBody(w, r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	structured, p := ingest.BinaryToStructured(r.Header, body)
	if p != nil {
		problem.Write(w, p)
		return
	}
	s.ingest(w, r, ingest.MediaCloudEvent, structured)
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request, media string, body []byte) {
	res, p := s.o.Ingester.Ingest(r.Context(), scopeFrom(r), media, body)
	if p != nil {
		problem.Write(w, p)
		return
	}
	// A lone event (not a batch) that was rejected is answered with its own problem: there is
	// no batch for the good ones to be part of. A batch whose events were all rejected is a
	// problem too, carrying every per-event problem.
	if res.Accepted == 0 && res.Duplicates == 0 && len(res.Rejected) > 0 {
		first := res.Rejected[0].Problem
		if isSingle(body) {
			problem.Write(w, first)
			return
		}
		status := first.Status
		for _, rj := range res.Rejected {
			if rj.Problem.Status != status {
				status = http.StatusBadRequest
			}
		}
		agg := problem.New(problem.InvalidEvent, status, fmt.Sprintf("all %d events were rejected; see rejected", len(res.Rejected)))
		agg.Extra = map[string]any{"rejected": res.Rejected, "accepted": 0, "duplicates": 0}
		problem.Write(w, agg)
		return
	}
	writeJSON(w, http.StatusAccepted, res)
}

func isSingle(body []byte) bool {
	b := bytes.TrimSpace(body)
	return len(b) > 0 && b[0] == '{'
}

func (s *Server) listMeters(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.o.Catalog.Meters(scopeFrom(r)), "next_cursor": nil})
}

func (s *Server) getMeter(w http.ResponseWriter, r *http.Request) {
	getConfig(w, r, "meter", s.o.Catalog.Meter)
}

func (s *Server) putMeter(w http.ResponseWriter, r *http.Request) {
	body, p := s.readBody(w, r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	var spec catalog.MeterSpec
	if p := decodeStrict(body, &spec); p != nil {
		problem.Write(w, p)
		return
	}
	m, fe := catalog.ValidateMeter(spec.Meter(r.PathValue("key")))
	if fe != nil {
		problem.Write(w, invalidConfig(fe))
		return
	}
	if _, err := catalog.PutMeter(r.Context(), s.o.JS, s.o.Catalog, scopeFrom(r), m, s.o.Now()); err != nil {
		s.o.Log.Error("storing meter", "err", err)
		problem.Write(w, &problem.Problem{Type: problem.TypeBase + problem.Unavailable, Title: problem.Title(problem.Unavailable), Status: http.StatusServiceUnavailable, Detail: err.Error(), RetryAfter: 1})
		return
	}
	writeJSON(w, http.StatusOK, m)
}
