package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
)

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.o.Catalog.Rules(scopeFrom(r)), "next_cursor": nil})
}

func (s *Server) getRule(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	vs := s.o.Catalog.RuleVersions(scopeFrom(r), key)
	if len(vs) == 0 {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "Not found", fmt.Sprintf("no rule %q", key)))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"key": key, "meter": vs[0].Meter, "latest_version": vs[len(vs)-1].Version, "versions": vs})
}

func (s *Server) putRule(w http.ResponseWriter, r *http.Request) {
	body, p := s.readBody(w, r)
	if p != nil {
		problem.Write(w, p)
		return
	}
	var spec catalog.RuleSpec
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		problem.Write(w, jsonProblem(err))
		return
	}
	sc := scopeFrom(r)
	rule, fe := s.o.Catalog.ValidateRule(sc, r.PathValue("key"), spec, s.o.Now())
	if fe != nil {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, fe.Field, "%s", fe.Msg))
		return
	}
	stored, err := catalog.PutRule(r.Context(), s.o.JS, s.o.Catalog, sc, rule, s.o.Now(), false)
	if err != nil {
		s.o.Log.Error("storing rule", "err", err)
		problem.Write(w, &problem.Problem{Type: problem.TypeBase + problem.Unavailable, Title: "Config store unavailable", Status: http.StatusServiceUnavailable, Detail: err.Error(), RetryAfter: 1})
		return
	}
	writeJSON(w, http.StatusCreated, stored)
}

// jsonProblem turns a decoding error into a 400 that names the field where it can.
func jsonProblem(err error) *problem.Problem {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, ute.Field, "%s must be %s, got %s", ute.Field, ute.Type, ute.Value)
	}
	return problem.New(problem.InvalidJSON, http.StatusBadRequest, "Invalid JSON", err.Error())
}

func (s *Server) getBalance(w http.ResponseWriter, r *http.Request) {
	customer := r.PathValue("id")
	a, _ := s.o.Ledger.Account(scopeFrom(r), customer)
	// A customer allot has not seen yet has a zero balance: unknown external ids exist on
	// first use, so this is an answer, not a 404.
	bal := a.Balance()
	writeJSON(w, http.StatusOK, map[string]any{
		"customer":          customer,
		"balance":           bal,
		"reserved":          events.Credits(0),
		"effective_balance": bal,
		"blocks":            []any{},
		"debited":           a.Debited,
		"credited_back":     a.CreditedBack,
		"unrated_events":    a.Unrated,
		"version":           s.o.Ledger.Seq(),
	})
}

// ledgerEntry is one entry of GET /v1/customers/{id}/ledger.
type ledgerEntry struct {
	Seq   uint64          `json:"seq"`
	Type  string          `json:"type"`
	Time  string          `json:"recorded_at"`
	Entry json.RawMessage `json:"entry"`
}

const maxLedgerPage = 500

// getLedger pages through the customer's ledger subject, oldest first. The cursor is the
// stream sequence to continue from.
func (s *Server) getLedger(w http.ResponseWriter, r *http.Request) {
	sc := scopeFrom(r)
	customer := r.PathValue("id")
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLedgerPage {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "limit", "limit must be a whole number from 1 to %d", maxLedgerPage))
			return
		}
		limit = n
	}
	from := uint64(1)
	if c := r.URL.Query().Get("cursor"); c != "" {
		n, err := strconv.ParseUint(c, 10, 64)
		if err != nil || n == 0 {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor is not one this API gave out"))
			return
		}
		from = n
	}
	stream, err := s.o.JS.Stream(r.Context(), bus.LedgerStream)
	if err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	subject := events.LedgerSubject(sc.Product, sc.Env, customer)
	data := make([]ledgerEntry, 0, limit)
	var next any
	for len(data) < limit {
		m, err := stream.GetMsg(r.Context(), from, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			break
		}
		if err != nil {
			problem.Write(w, unavailable(err))
			return
		}
		data = append(data, ledgerEntry{Seq: m.Sequence, Type: m.Header.Get(events.HeaderType), Time: m.Time.UTC().Format(time.RFC3339Nano), Entry: m.Data})
		from = m.Sequence + 1
	}
	if len(data) == limit {
		if _, err := stream.GetMsg(r.Context(), from, jetstream.WithGetMsgSubject(subject)); err == nil {
			next = strconv.FormatUint(from, 10)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "next_cursor": next})
}

func unavailable(err error) *problem.Problem {
	return &problem.Problem{Type: problem.TypeBase + problem.Unavailable, Title: "Event store unavailable", Status: http.StatusServiceUnavailable, Detail: err.Error(), RetryAfter: 1}
}
