package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

func (s *Server) putPlan(w http.ResponseWriter, r *http.Request) {
	var spec catalog.PlanSpec
	if p := s.decodeBody(w, r, &spec); p != nil {
		problem.Write(w, p)
		return
	}
	plan, fe := catalog.ValidatePlan(r.PathValue("key"), spec)
	if fe != nil {
		problem.Write(w, invalidConfig(fe))
		return
	}
	if _, err := catalog.PutPlan(r.Context(), s.o.JS, s.o.Catalog, scopeFrom(r), plan, s.o.Now()); err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, plan)
}

func (s *Server) getPlan(w http.ResponseWriter, r *http.Request) {
	getConfig(w, r, "plan", s.o.Catalog.Plan)
}

type subscriptionView struct {
	ID             string          `json:"id"`
	Customer       string          `json:"customer"`
	Plan           string          `json:"plan"`
	Mode           string          `json:"mode"`
	Status         string          `json:"status"`
	Cycle          int64           `json:"cycle"`
	CycleStart     time.Time       `json:"cycle_start"`
	CycleEnd       time.Time       `json:"cycle_end"`
	Start          time.Time       `json:"start"`
	CanceledAt     *time.Time      `json:"canceled_at,omitempty"`
	LastCycleUsage *events.Credits `json:"last_cycle_usage,omitempty"`
}

func (s *Server) subscription(w http.ResponseWriter, r *http.Request, customer, id string, status int) {
	a, _ := s.o.Ledger.Account(scopeFrom(r), customer)
	sub := a.Subscriptions[id]
	if sub == nil {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such subscription"))
		return
	}
	writeJSON(w, status, subscriptionView{ID: id, Customer: customer, Plan: sub.Plan.Key, Mode: sub.Plan.Mode, Status: sub.StatusAt(s.o.Now()),
		Cycle: sub.Cycle, CycleStart: sub.CycleStart, CycleEnd: sub.CycleEnd, Start: sub.Start, CanceledAt: sub.Canceled, LastCycleUsage: sub.LastUsage})
}

func (s *Server) postSubscription(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Customer string     `json:"customer"`
		Plan     string     `json:"plan"`
		Start    *time.Time `json:"start,omitempty"`
	}
	if p := s.decodeBody(w, r, &b); p != nil {
		problem.Write(w, p)
		return
	}
	if b.Customer == "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required"))
		return
	}
	sc := scopeFrom(r)
	plan, ok := s.o.Catalog.Plan(sc, b.Plan)
	if !ok {
		if !s.catalogCaughtUp(w, r) {
			return
		}
		if plan, ok = s.o.Catalog.Plan(sc, b.Plan); !ok {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, "plan", "no plan %q in this product and env", b.Plan))
			return
		}
	}
	customer, ok := s.resolveCustomer(w, r, b.Customer, "customer")
	if !ok {
		return
	}
	now := s.o.Now()
	start := now
	if b.Start != nil {
		if !events.TimeInRange(*b.Start) {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "start", "start %s", events.TimeRangeMsg))
			return
		}
		start = *b.Start
	}
	id := newID("sub_", r, customer)
	_, err := s.appendDecided(r.Context(), sc, customer, func(a *projector.Account) (string, any, error) {
		e, err := a.DecideSubscribe(id, plan, start, now)
		return events.TypeSubscriptionStarted, e, err
	})
	if err != nil {
		problem.Write(w, s.commandProblem(err))
		return
	}
	s.subscription(w, r, customer, id, http.StatusCreated)
}

func (s *Server) postRenew(w http.ResponseWriter, r *http.Request) {
	// Renewing a cycle that is granted already is not an error: retries land there.
	s.ownedCommand(w, r, "subscription", &struct{}{}, projector.ErrAlreadyRenewed, func(a *projector.Account, id string, now time.Time) (string, any, error) {
		e, err := a.DecideRenew(id, now, false)
		return events.TypeSubscriptionRenewed, e, err
	}, func(customer, id string) { s.subscription(w, r, customer, id, http.StatusOK) })
}

func (s *Server) postCancel(w http.ResponseWriter, r *http.Request) {
	s.ownedCommand(w, r, "subscription", &struct{}{}, projector.ErrSubscriptionCanceled, func(a *projector.Account, id string, now time.Time) (string, any, error) {
		e, err := a.DecideCancel(id, now)
		return events.TypeSubscriptionCanceled, e, err
	}, func(customer, id string) { s.subscription(w, r, customer, id, http.StatusOK) })
}

func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	customer, ok := s.reservationCustomer(w, r, id, "subscription")
	if !ok {
		return
	}
	s.subscription(w, r, customer, id, http.StatusOK)
}

// postTopup adds credits to the customer's wallet: a never-expiring block that burns last.
func (s *Server) postTopup(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Amount    *events.Credits `json:"amount"`
		CostBasis *events.Decimal `json:"cost_basis,omitempty"`
	}
	if p := s.decodeBody(w, r, &b); p != nil {
		problem.Write(w, p)
		return
	}
	if b.Amount == nil {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount is required"))
		return
	}
	customer, ok := s.customerParam(w, r)
	if !ok {
		return
	}
	view, _, err := s.appendGrant(r, customer, projector.Grant{Amount: *b.Amount, Source: events.SourceWallet, CostBasis: b.CostBasis})
	switch {
	case err != nil:
		problem.Write(w, s.commandProblem(err))
	case view != nil:
		writeJSON(w, http.StatusCreated, view)
	default:
		problem.Write(w, unavailable(errors.New("the top-up was stored but is not visible yet")))
	}
}
