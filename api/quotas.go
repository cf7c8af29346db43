package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// Problem types of quotas.
const (
	probQuotaExceeded   = "quota-exceeded"
	probWeightOverLimit = "weight-over-limit"
)

func (s *Server) putQuota(w http.ResponseWriter, r *http.Request) {
	var spec catalog.QuotaSpec
	if p := s.decodeBody(w, r, &spec); p != nil {
		problem.Write(w, p)
		return
	}
	sc := scopeFrom(r)
	q, fe := s.o.Catalog.ValidateQuota(sc, r.PathValue("key"), spec)
	if fe != nil {
		problem.Write(w, invalidConfig(fe))
		return
	}
	if _, err := catalog.PutQuota(r.Context(), s.o.JS, s.o.Catalog, sc, q, s.o.Now()); err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, q)
}

func (s *Server) getQuota(w http.ResponseWriter, r *http.Request) {
	getConfig(w, r, "quota", s.o.Catalog.Quota)
}

// quotaRequest is the body of check, increment, reset and adjust.
type quotaRequest struct {
	Customer string          `json:"customer"`
	Amount   json.RawMessage `json:"amount,omitempty"`
}

// readQuotaRequest decodes the body and the quota; amount defaults to def (nil: required).
func (s *Server) readQuotaRequest(w http.ResponseWriter, r *http.Request, def *events.Decimal) (events.Quota, string, events.Decimal, bool) {
	var b quotaRequest
	if p := s.decodeBody(w, r, &b); p != nil {
		problem.Write(w, p)
		return events.Quota{}, "", events.Decimal{}, false
	}
	q, ok := s.o.Catalog.Quota(scopeFrom(r), r.PathValue("key"))
	if !ok {
		problem.Write(w, notFound("quota", r.PathValue("key")))
		return q, "", events.Decimal{}, false
	}
	if b.Customer == "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required"))
		return q, "", events.Decimal{}, false
	}
	var amt events.Decimal
	switch {
	case len(b.Amount) > 0 && string(b.Amount) != "null":
		if err := json.Unmarshal(b.Amount, &amt); err != nil {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount must be a decimal number"))
			return q, "", events.Decimal{}, false
		}
	case def != nil:
		amt = *def
	default:
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount is required"))
		return q, "", events.Decimal{}, false
	}
	return q, s.o.Ledger.ResolveCustomer(scopeFrom(r), b.Customer), amt, true
}

// setRateLimitHeaders writes RateLimit-Policy and RateLimit (IETF httpapi draft) for the
// statuses: quota units are whole numbers in the headers (rounded down).
func setRateLimitHeaders(w http.ResponseWriter, quotas []events.Quota, st []projector.QuotaStatus, now time.Time) {
	var pol, cur []string
	for i, s := range st {
		window := int64(math.Round(s.ResetsAt.Sub(s.WindowStart).Seconds()))
		pol = append(pol, fmt.Sprintf("%q;q=%s;w=%d", quotas[i].Key, wholeUnits(s.Limit), window))
		reset := int64(math.Ceil(s.ResetsAt.Sub(now).Seconds()))
		cur = append(cur, fmt.Sprintf("%q;r=%s;t=%d", quotas[i].Key, wholeUnits(s.Remaining), max(reset, 0)))
	}
	w.Header().Set("RateLimit-Policy", strings.Join(pol, ", "))
	w.Header().Set("RateLimit", strings.Join(cur, ", "))
}

func wholeUnits(d events.Decimal) string {
	s := d.String()
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s = s[:i]
	}
	if s == "" || s == "-" || strings.HasPrefix(s, "-") {
		return "0"
	}
	return s
}

// quotaStatusView is one quota's status in an answer (fields in name order, as the JSON of a
// map would have them); Customer is set on the single-quota endpoints.
type quotaStatusView struct {
	Allowed     bool           `json:"allowed"`
	Customer    string         `json:"customer,omitempty"`
	Limit       events.Decimal `json:"limit"`
	Quota       string         `json:"quota"`
	Remaining   events.Decimal `json:"remaining"`
	Requested   events.Decimal `json:"requested"`
	ResetsAt    time.Time      `json:"resets_at"`
	Used        events.Decimal `json:"used"`
	WindowStart time.Time      `json:"window_start"`
}

// quotaMap is a quota status for the answers that leave fields out.
func quotaMap(s projector.QuotaStatus) map[string]any {
	return map[string]any{"quota": s.Quota, "allowed": s.Allowed, "used": s.Used, "limit": s.Limit, "remaining": s.Remaining,
		"requested": s.Requested, "window_start": s.WindowStart, "resets_at": s.ResetsAt}
}

func quotaView(s projector.QuotaStatus, customer string) quotaStatusView {
	return quotaStatusView{Quota: s.Quota, Allowed: s.Allowed, Used: s.Used, Limit: s.Limit, Remaining: s.Remaining,
		Requested: s.Requested, WindowStart: s.WindowStart, ResetsAt: s.ResetsAt, Customer: customer}
}

func (s *Server) postQuotaCheck(w http.ResponseWriter, r *http.Request) {
	one := events.DecimalFromInt(1)
	q, customer, amt, ok := s.readQuotaRequest(w, r, &one)
	if !ok {
		return
	}
	if amt.Sign() <= 0 {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount must be greater than 0"))
		return
	}
	now := s.o.Now()
	var st []projector.QuotaStatus
	s.o.Ledger.View(scopeFrom(r), customer, func(a *projector.Account, _ uint64) {
		st = a.QuotaStatuses([]events.Quota{q}, []events.Decimal{amt}, now)
	})
	setRateLimitHeaders(w, []events.Quota{q}, st, now)
	writeJSON(w, http.StatusOK, quotaView(st[0], customer))
}

func (s *Server) postQuotaIncrement(w http.ResponseWriter, r *http.Request) {
	one := events.DecimalFromInt(1)
	q, customer, amt, ok := s.readQuotaRequest(w, r, &one)
	if !ok {
		return
	}
	quotas, amounts := []events.Quota{q}, []events.Decimal{amt}
	st, err := s.increment(r, customer, quotas, amounts)
	if err != nil {
		var qe *projector.QuotaError
		if errors.As(err, &qe) && errors.Is(err, projector.ErrQuotaExceeded) {
			s.notifyQuotaExceeded(r.Context(), scopeFrom(r), customer, qe.Statuses)
		}
		s.writeQuotaError(w, quotas, err)
		return
	}
	setRateLimitHeaders(w, quotas, st, s.o.Now())
	writeJSON(w, http.StatusOK, quotaView(st[0], customer))
}

// increment decides and appends an all-or-nothing increment of several quotas.
func (s *Server) increment(r *http.Request, customer string, quotas []events.Quota, amounts []events.Decimal) ([]projector.QuotaStatus, error) {
	now := s.o.Now()
	if idempotencyKeyFrom(r) == "" {
		// Batched with the customer's other increments in flight (group commit).
		return s.incs.Increment(r.Context(), scopeFrom(r), customer, quotas, amounts, now)
	}
	// With an Idempotency-Key the entry carries the command's id, so it is written alone.
	var st []projector.QuotaStatus
	_, err := s.appendDecided(r.Context(), scopeFrom(r), customer, func(a *projector.Account) (string, any, error) {
		e, statuses, err := a.DecideIncrement(quotas, amounts, now)
		st = statuses
		return events.TypeQuotaIncremented, e, err
	})
	return st, err
}

func (s *Server) writeQuotaError(w http.ResponseWriter, quotas []events.Quota, err error) {
	var qe *projector.QuotaError
	if !errors.As(err, &qe) {
		problem.Write(w, s.commandProblem(err))
		return
	}
	now := s.o.Now()
	setRateLimitHeaders(w, quotas, qe.Statuses, now)
	var violated []string
	var first *projector.QuotaStatus
	for i := range qe.Statuses {
		if !qe.Statuses[i].Allowed {
			violated = append(violated, qe.Statuses[i].Quota)
			if first == nil {
				first = &qe.Statuses[i]
			}
		}
	}
	if first == nil {
		first = &qe.Statuses[0]
	}
	ext := map[string]any{"violated-policies": violated, "limit": first.Limit, "used": first.Used, "requested": first.Requested, "resets_at": first.ResetsAt}
	if errors.Is(err, projector.ErrWeightOverLimit) {
		p := problem.New(probWeightOverLimit, http.StatusUnprocessableEntity, "Weight over limit", err.Error()+": it can never be admitted")
		p.Field, p.Extra = "amount", ext
		problem.Write(w, p)
		return
	}
	p := problem.New(probQuotaExceeded, http.StatusTooManyRequests, "Quota exceeded",
		fmt.Sprintf("%s: %s used of %s; the window resets at %s", strings.Join(violated, ", "), first.Used, first.Limit, first.ResetsAt.Format(time.RFC3339)))
	p.Extra = ext
	p.RetryAfter = int(math.Ceil(first.ResetsAt.Sub(now).Seconds()))
	if p.RetryAfter < 1 {
		p.RetryAfter = 1
	}
	problem.Write(w, p)
}

func (s *Server) postQuotaReset(w http.ResponseWriter, r *http.Request) {
	zero := events.Decimal{}
	q, customer, _, ok := s.readQuotaRequest(w, r, &zero)
	if !ok {
		return
	}
	now := s.o.Now()
	_, err := s.appendDecided(r.Context(), scopeFrom(r), customer, func(a *projector.Account) (string, any, error) {
		return events.TypeQuotaReset, events.QuotaReset{Customer: customer, Quota: q.Key, Period: q.Period, At: now.UTC()}, nil
	})
	if err != nil {
		problem.Write(w, s.commandProblem(err))
		return
	}
	s.writeQuotaStatus(w, r, q, customer, now)
}

func (s *Server) postQuotaAdjust(w http.ResponseWriter, r *http.Request) {
	q, customer, amt, ok := s.readQuotaRequest(w, r, nil)
	if !ok {
		return
	}
	if amt.IsZero() {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount must not be 0"))
		return
	}
	now := s.o.Now()
	_, err := s.appendDecided(r.Context(), scopeFrom(r), customer, func(a *projector.Account) (string, any, error) {
		return events.TypeQuotaAdjusted, events.QuotaAdjusted{Customer: customer, Quota: q.Key, Amount: amt, Period: q.Period, At: now.UTC()}, nil
	})
	if err != nil {
		problem.Write(w, s.commandProblem(err))
		return
	}
	s.writeQuotaStatus(w, r, q, customer, now)
}

func (s *Server) writeQuotaStatus(w http.ResponseWriter, r *http.Request, q events.Quota, customer string, now time.Time) {
	a, _ := s.o.Ledger.Account(scopeFrom(r), customer)
	st := a.QuotaStatuses([]events.Quota{q}, []events.Decimal{{}}, now)
	setRateLimitHeaders(w, []events.Quota{q}, st, now)
	v := quotaMap(st[0])
	v["customer"] = customer
	delete(v, "requested")
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) getCustomerQuotas(w http.ResponseWriter, r *http.Request) {
	sc, now := scopeFrom(r), s.o.Now()
	customer := s.customerParam(r)
	a, _ := s.o.Ledger.Account(sc, customer)
	qs := s.o.Catalog.Quotas(sc)
	zeros := make([]events.Decimal, len(qs))
	data := make([]map[string]any, 0, len(qs))
	for _, st := range a.QuotaStatuses(qs, zeros, now) {
		v := quotaMap(st)
		delete(v, "requested")
		delete(v, "allowed")
		data = append(data, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"customer": customer, "data": data, "version": s.o.Ledger.Seq()})
}
