package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/rating"
)

type blockView struct {
	ID          string          `json:"id"`
	Source      string          `json:"source"`
	Priority    int             `json:"priority"`
	Granted     events.Credits  `json:"granted"`
	Remaining   events.Credits  `json:"remaining"`
	EffectiveAt time.Time       `json:"effective_at"`
	ExpiresAt   *time.Time      `json:"expires_at"`
	CostBasis   *events.Decimal `json:"cost_basis,omitempty"`
	Status      string          `json:"status"` // active, pending (not yet effective), expired, used
}

// The answers of balance reads and entitlement checks — allot's hottest reads — are written by
// hand (TestViewsEncodeLikeEncodingJSON holds them to encoding/json's output).

func (v blockView) appendJSON(b []byte, err *error) []byte {
	b = append(b, `{"id":`...)
	b = events.AppendJSONString(b, v.ID)
	b = append(b, `,"source":`...)
	b = events.AppendJSONString(b, v.Source)
	b = append(b, `,"priority":`...)
	b = strconv.AppendInt(b, int64(v.Priority), 10)
	b = appendCredits(append(b, `,"granted":`...), v.Granted)
	b = appendCredits(append(b, `,"remaining":`...), v.Remaining)
	b = appendTime(append(b, `,"effective_at":`...), v.EffectiveAt, err)
	b = append(b, `,"expires_at":`...)
	if v.ExpiresAt == nil {
		b = append(b, "null"...)
	} else {
		b = appendTime(b, *v.ExpiresAt, err)
	}
	if v.CostBasis != nil {
		b = append(b, `,"cost_basis":"`...)
		b, _ = v.CostBasis.AppendText(b)
		b = append(b, '"')
	}
	b = append(b, `,"status":`...)
	b = events.AppendJSONString(b, v.Status)
	return append(b, '}')
}

func (v balanceView) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = appendCredits(append(b, `{"balance":`...), v.Balance)
	b = append(b, `,"blocks":`...)
	if v.Blocks == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, bl := range v.Blocks {
			if i > 0 {
				b = append(b, ',')
			}
			b = bl.appendJSON(b, &err)
		}
		b = append(b, ']')
	}
	b = appendCredits(append(b, `,"committed":`...), v.Committed)
	b = appendCredits(append(b, `,"credited_back":`...), v.CreditedBack)
	b = events.AppendJSONString(append(b, `,"customer":`...), v.Customer)
	b = events.AppendJSONString(append(b, `,"customer_id":`...), v.CustomerID)
	b = appendCredits(append(b, `,"debited":`...), v.Debited)
	b = appendCredits(append(b, `,"effective_balance":`...), v.EffectiveBalance)
	b = appendCredits(append(b, `,"expired":`...), v.Expired)
	b = appendCredits(append(b, `,"overage":`...), v.Overage)
	b = appendCredits(append(b, `,"reserved":`...), v.Reserved)
	b = strconv.AppendInt(append(b, `,"unrated_events":`...), v.UnratedEvents, 10)
	b = strconv.AppendUint(append(b, `,"version":`...), v.Version, 10)
	return append(b, '}'), err
}

func (v entitlementView) AppendJSON(b []byte) ([]byte, error) {
	b = strconv.AppendBool(append(b, `{"allowed":`...), v.Allowed)
	b = appendCredits(append(b, `,"balance":`...), v.Balance)
	b = events.AppendJSONString(append(b, `,"customer":`...), v.Customer)
	b = appendCredits(append(b, `,"effective_balance":`...), v.EffectiveBalance)
	b = appendCredits(append(b, `,"estimated_cost":`...), v.EstimatedCost)
	b = events.AppendJSONString(append(b, `,"feature":`...), v.Feature)
	if v.OverdraftLimit != nil {
		b = appendCredits(append(b, `,"overdraft_limit":`...), *v.OverdraftLimit)
	}
	b = events.AppendJSONString(append(b, `,"reason":`...), v.Reason)
	b = appendCredits(append(b, `,"reserved":`...), v.Reserved)
	b = strconv.AppendUint(append(b, `,"version":`...), v.Version, 10)
	return append(b, '}'), nil
}

func appendCredits(b []byte, c events.Credits) []byte {
	return append(c.AppendText(append(b, '"')), '"')
}

// appendTime appends t as encoding/json would, keeping the first error (a year past 9999)
// in *err, as encoding/json would fail the whole answer.
func appendTime(b []byte, t time.Time, err *error) []byte {
	out, e := events.AppendJSONTime(b, t)
	if e != nil {
		if *err == nil {
			*err = e
		}
		return b
	}
	return out
}

func viewBlock(b *projector.Block, now time.Time) blockView {
	v := blockView{ID: b.ID, Source: b.Source, Priority: b.Priority, Granted: b.Granted, Remaining: b.Remaining,
		EffectiveAt: b.EffectiveAt, ExpiresAt: b.ExpiresAt, CostBasis: b.CostBasis, Status: "active"}
	switch {
	case b.Expired || (b.ExpiresAt != nil && !now.Before(*b.ExpiresAt)):
		v.Status = "expired"
	case b.EffectiveAt.After(now):
		v.Status = "pending"
	case b.Remaining == 0:
		v.Status = "used"
	}
	return v
}

// balanceView is the answer of GET /v1/customers/{id}/balance (fields in name order, as the
// JSON of a map would have them).
type balanceView struct {
	Balance          events.Credits `json:"balance"`
	Blocks           []blockView    `json:"blocks"`
	Committed        events.Credits `json:"committed"`
	CreditedBack     events.Credits `json:"credited_back"`
	Customer         string         `json:"customer"`
	CustomerID       string         `json:"customer_id"`
	Debited          events.Credits `json:"debited"`
	EffectiveBalance events.Credits `json:"effective_balance"`
	Expired          events.Credits `json:"expired"`
	Overage          events.Credits `json:"overage"`
	Reserved         events.Credits `json:"reserved"`
	UnratedEvents    int64          `json:"unrated_events"`
	Version          uint64         `json:"version"`
}

func viewBalance(scope events.Scope, a *projector.Account, now time.Time, version uint64) balanceView {
	blocks := make([]blockView, 0, len(a.Blocks))
	for _, b := range a.Blocks {
		blocks = append(blocks, viewBlock(b, now))
	}
	bal, res := a.Balance(now), a.Reserved(now)
	return balanceView{Customer: a.Customer, CustomerID: events.CustomerID(scope, a.Customer), Balance: bal, Reserved: res,
		EffectiveBalance: projector.SubCredits(bal, res), Overage: a.Overage, Blocks: blocks, Debited: a.Debited, CreditedBack: a.CreditedBack,
		Committed: a.Committed, Expired: a.Expired, UnratedEvents: a.Unrated, Version: version}
}

// customerParam is the {id} of a customer path: an external id or allot's UUID for it. For a
// UUID no customer has, it writes a 404 and reports false.
func (s *Server) customerParam(w http.ResponseWriter, r *http.Request) (string, bool) {
	return s.resolveCustomer(w, r, r.PathValue("id"), "id")
}

// resolveCustomer maps allot's UUID for a customer to the customer's external id (any other id
// is an external id already). A UUID the projection does not know may be a customer whose
// first entry this process has not folded yet: it waits for the projection to reach the
// ledger's end and looks again. A UUID still unknown names no customer — granting to it would
// credit a customer called by the UUID — so the answer is a 404 naming field.
func (s *Server) resolveCustomer(w http.ResponseWriter, r *http.Request, id, field string) (string, bool) {
	if len(id) > events.MaxCustomerLen {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "a customer id is at most %d bytes; this one is %d", events.MaxCustomerLen, len(id)))
		return "", false
	}
	sc := scopeFrom(r)
	c := s.o.Ledger.ResolveCustomer(sc, id)
	if c != id || !events.LooksLikeCustomerID(id) || s.o.Ledger.Known(sc, id) {
		return c, true
	}
	stream, err := s.ledgerStream(r.Context())
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = stream.Info(r.Context())
	}
	if err == nil && !s.o.Ledger.WaitFor(info.State.LastSeq, time.Now().Add(2*time.Second)) {
		err = errors.New("the ledger projection is behind the stream")
	}
	if err != nil { // not known yet is not unknown: say so, retryably
		problem.Write(w, unavailable(err))
		return "", false
	}
	if c = s.o.Ledger.ResolveCustomer(sc, id); c != id || s.o.Ledger.Known(sc, id) {
		return c, true
	}
	problem.Write(w, problem.Fieldf(problem.NotFound, http.StatusNotFound, field,
		"no customer has the id %s in this product and env; a customer is known by allot's id once it has a ledger entry, and by its own id always", id))
	return "", false
}

func (s *Server) getBalance(w http.ResponseWriter, r *http.Request) {
	var v balanceView
	customer, ok := s.customerParam(w, r)
	if !ok {
		return
	}
	now, scope := s.o.Now(), scopeFrom(r)
	s.o.Ledger.View(scope, customer, func(a *projector.Account, seq uint64) { v = viewBalance(scope, a, now, seq) })
	writeJSON(w, http.StatusOK, v)
}

// decodeBody reads a JSON body strictly (unknown fields are errors).
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *problem.Problem {
	body, p := s.readBody(w, r)
	if p != nil {
		return p
	}
	return decodeStrict(body, v)
}

// decodeStrict decodes a JSON body strictly (unknown fields are errors); an empty body is {}.
func decodeStrict(body []byte, v any) *problem.Problem {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonProblem(body, v, err)
	}
	// One value and nothing after it: `{…}x` or `{…} {…}` had been acted on as its first value.
	if _, err := dec.Token(); err != io.EOF {
		return problem.New(problem.InvalidJSON, http.StatusBadRequest, "the body holds more than one JSON value (or something after it)")
	}
	return nil
}

// appendDecided decides a command on the customer's current state and appends it
// (projector.AppendDecided).
func (s *Server) appendDecided(ctx context.Context, scope events.Scope, customer string, decide func(a *projector.Account) (string, any, error)) (uint64, error) {
	stream, err := s.ledgerStream(ctx)
	if err != nil {
		return 0, err
	}
	return projector.AppendDecided(ctx, s.o.JS, stream, s.o.Ledger, scope, customer, commandID(ctx, scope, customer), decide)
}

// commandID is the id of the command a request with an Idempotency-Key carries out for the
// customer ("" without one): the JetStream dedup key of its entry, which projections remember.
func commandID(ctx context.Context, scope events.Scope, customer string) string {
	k, _ := ctx.Value(idemKeyCtx{}).(string)
	if k == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(scope.String() + "\x00" + customer + "\x00" + k))
	return scope.Product + ":" + scope.Env + ":cmd:" + hex.EncodeToString(sum[:16])
}

// newID returns a prefixed id: derived from the Idempotency-Key when there is one (so a
// retried command names the same object), random otherwise. The derivation covers the
// customer the object is made for (owner; "" for objects of no customer): a key used again
// for another customer once its record is gone (24 h) named the same subscription or hold for
// both, and the id's index — and renew, cancel, GET — moved to the second customer.
func newID(prefix string, r *http.Request, owner string) string {
	if k := idempotencyKeyFrom(r); k != "" {
		sum := sha256.Sum256([]byte(prefix + "\x00" + scopeFrom(r).String() + "\x00" + owner + "\x00" + k))
		return prefix + hex.EncodeToString(sum[:12])
	}
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func (s *Server) commandProblem(err error) *problem.Problem {
	var fe *projector.FieldError
	switch {
	case errors.As(err, &fe):
		return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, fe.Field, "%s", fe.Msg)
	case errors.Is(err, projector.ErrInsufficientCredits):
		return problem.New(problem.InsufficientCredits, http.StatusConflict, err.Error())
	case errors.Is(err, projector.ErrReservationNotFound):
		return problem.New(problem.NotFound, http.StatusNotFound, "no such reservation")
	case errors.Is(err, projector.ErrReservationExpired):
		return problem.New(problem.ReservationExpired, http.StatusConflict, "the reservation's TTL has passed; its credits were released")
	case errors.Is(err, projector.ErrReservationEnded):
		return problem.New(problem.ReservationEnded, http.StatusConflict, err.Error())
	case errors.Is(err, projector.ErrSubscriptionNotFound):
		return problem.New(problem.NotFound, http.StatusNotFound, "no such subscription")
	case errors.Is(err, projector.ErrPostpaidExists):
		return problem.New(problem.PostpaidSubscription, http.StatusConflict, err.Error())
	case errors.Is(err, projector.ErrSubscriptionCanceled):
		return problem.New(problem.SubscriptionCanceled, http.StatusConflict, "a canceled subscription is not renewed")
	case errors.Is(err, projector.ErrSubscriptionEnds):
		return problem.New(problem.SubscriptionEnded, http.StatusConflict, err.Error())
	case errors.Is(err, projector.ErrSubscriptionExists):
		return problem.New(problem.IdempotencyKeyReused, http.StatusUnprocessableEntity, "this Idempotency-Key started a subscription already ("+err.Error()+"), more than 24 h ago; use a new key for a new subscription")
	}
	if errors.Is(err, projector.ErrNotVisibleYet) {
		// Written: a retry is safe only as a retry of the same command.
		p := unavailable(err)
		p.Detail = "written, not visible yet: the command was written, but this process cannot show it yet; retry with the same Idempotency-Key to get its answer (a retry without one would carry it out again)"
		return p
	}
	s.o.Log.Error("ledger command", "err", err)
	p := unavailable(err)
	p.Detail = "try again: " + p.Detail
	return p
}

type grantBody struct {
	Amount      *events.Credits `json:"amount"`
	Source      string          `json:"source"`
	Priority    *int            `json:"priority,omitempty"`
	EffectiveAt *time.Time      `json:"effective_at,omitempty"`
	ExpiresAt   *time.Time      `json:"expires_at,omitempty"`
	CostBasis   *events.Decimal `json:"cost_basis,omitempty"`
}

func (s *Server) postGrant(w http.ResponseWriter, r *http.Request) {
	var b grantBody
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
	view, granted, err := s.appendGrant(r, customer, projector.Grant{Amount: *b.Amount, Source: b.Source, Priority: b.Priority,
		EffectiveAt: b.EffectiveAt, ExpiresAt: b.ExpiresAt, CostBasis: b.CostBasis})
	switch {
	case err != nil:
		problem.Write(w, s.commandProblem(err))
	case view != nil:
		writeJSON(w, http.StatusCreated, view)
	default:
		writeJSON(w, http.StatusCreated, granted)
	}
}

// appendGrant decides and appends a grant (a new block, its id derived from any
// Idempotency-Key) and returns the block as the projection holds it now, nil when it is not
// visible yet, with the entry written.
func (s *Server) appendGrant(r *http.Request, customer string, g projector.Grant) (*blockView, events.CreditsGranted, error) {
	now, block := s.o.Now(), newID("blk_", r, customer)
	var granted events.CreditsGranted
	_, err := s.appendDecided(r.Context(), scopeFrom(r), customer, func(a *projector.Account) (string, any, error) {
		e, err := a.DecideGrant(block, g, now)
		granted = e
		return events.TypeCreditsGranted, e, err
	})
	if err != nil {
		return nil, granted, err
	}
	var view *blockView
	s.o.Ledger.View(scopeFrom(r), customer, func(a *projector.Account, _ uint64) {
		for _, bl := range a.Blocks {
			if bl.ID == block { // not granted.Block: a retry of a grant written already decides nothing
				v := viewBlock(bl, now)
				view = &v
			}
		}
	})
	return view, granted, nil
}

type reserveBody struct {
	Customer   string          `json:"customer"`
	Amount     *events.Credits `json:"amount"`
	TTLSeconds *int            `json:"ttl_seconds,omitempty"`
}

type reservationView struct {
	ID        string         `json:"id"`
	Customer  string         `json:"customer"`
	Status    string         `json:"status"`
	Amount    events.Credits `json:"amount"`
	Committed events.Credits `json:"committed"`
	ExpiresAt time.Time      `json:"expires_at"`
	CreatedAt time.Time      `json:"created_at"`
}

func (v reservationView) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = events.AppendJSONString(append(b, `{"id":`...), v.ID)
	b = events.AppendJSONString(append(b, `,"customer":`...), v.Customer)
	b = events.AppendJSONString(append(b, `,"status":`...), v.Status)
	b = appendCredits(append(b, `,"amount":`...), v.Amount)
	b = appendCredits(append(b, `,"committed":`...), v.Committed)
	b = appendTime(append(b, `,"expires_at":`...), v.ExpiresAt, &err)
	b = appendTime(append(b, `,"created_at":`...), v.CreatedAt, &err)
	return append(b, '}'), err
}

// readReserveBody reads a reservation request: a plain one by hand (plainFields), anything
// else — and a plain one whose values do not read, for the error's wording — strictly.
func readReserveBody(body []byte) (reserveBody, *problem.Problem) {
	f, ok := plainFields(body, "customer", "amount", "ttl_seconds")
	if ok && (f[0] == nil || f[0][0] == '"') && (f[2] == nil || f[2][0] != '"') {
		b := reserveBody{Customer: plainText(f[0])}
		ok = true
		if f[1] != nil {
			b.Amount = new(events.Credits)
			ok = b.Amount.UnmarshalJSON(f[1]) == nil
		}
		if f[2] != nil && ok {
			n, err := strconv.Atoi(string(f[2])) // what encoding/json takes for an int
			b.TTLSeconds, ok = &n, err == nil
		}
		if ok {
			return b, nil
		}
	}
	var b reserveBody
	p := decodeStrict(body, &b) // before the return reads b: the order within one is unspecified
	return b, p
}

func (s *Server) reservation(w http.ResponseWriter, r *http.Request, customer, id string) {
	var v *reservationView
	now := s.o.Now()
	s.o.Ledger.View(scopeFrom(r), customer, func(a *projector.Account, _ uint64) {
		if res := a.Reservations[id]; res != nil {
			v = &reservationView{ID: id, Customer: customer, Status: res.StatusAt(now), Amount: res.Amount,
				Committed: res.Committed, ExpiresAt: res.ExpiresAt, CreatedAt: res.CreatedAt}
		}
	})
	if v == nil {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such reservation"))
		return
	}
	status := http.StatusOK
	if r.Method == http.MethodPost && r.URL.Path == "/v1/reservations" {
		status = http.StatusCreated
	}
	writeJSON(w, status, *v)
}

func (s *Server) postReservation(w http.ResponseWriter, r *http.Request) {
	body, p := s.readBody(w, r)
	var b reserveBody
	if p == nil {
		b, p = readReserveBody(body)
	}
	if p != nil {
		problem.Write(w, p)
		return
	}
	if b.Customer == "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required"))
		return
	}
	if b.Amount == nil {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount is required"))
		return
	}
	var ok bool
	if b.Customer, ok = s.resolveCustomer(w, r, b.Customer, "customer"); !ok {
		return
	}
	ttl := projector.DefaultReservationTTL
	if b.TTLSeconds != nil {
		// Range-checked here, before the multiplication could wrap a huge value around to a
		// short TTL; DecideReserve says what the range is.
		ttl = -1
		if n := *b.TTLSeconds; n > 0 && n <= int(projector.MaxReservationTTL/time.Second) {
			ttl = time.Duration(n) * time.Second
		}
	}
	id, now := newID("res_", r, b.Customer), s.o.Now()
	var err error
	if idempotencyKeyFrom(r) == "" {
		// Batched with the customer's other holds in flight (group commit).
		err = s.resvs.Reserve(r.Context(), scopeFrom(r), b.Customer, id, *b.Amount, ttl, now)
	} else {
		// With an Idempotency-Key the entry carries the command's id, so it is written alone.
		cmd := commandID(r.Context(), scopeFrom(r), b.Customer)
		_, err = s.appendDecided(r.Context(), scopeFrom(r), b.Customer, func(a *projector.Account) (string, any, error) {
			if a.CarriedOut(cmd, id, false) { // the hold this key made, however long ago
				return "", nil, projector.ErrCarriedOut
			}
			e, err := a.DecideReserve(id, *b.Amount, ttl, now)
			return events.TypeReservationCreated, e, err
		})
	}
	if err != nil {
		problem.Write(w, s.commandProblem(err))
		return
	}
	s.reservation(w, r, b.Customer, id)
}

// reservationCustomer finds who holds a reservation, catching up with the ledger stream when
// this process has not seen it yet (it may have been created through another process). Not
// known yet is not unknown: when this process cannot catch up, it writes a 503 (retryable, and
// not stored for an Idempotency-Key) and reports false; a reservation still unknown once it
// has caught up is a 404 naming what, written here too.
func (s *Server) reservationCustomer(w http.ResponseWriter, r *http.Request, id, what string) (string, bool) {
	if c, ok := s.o.Ledger.ReservationCustomer(scopeFrom(r), id); ok {
		return c, true
	}
	stream, err := s.ledgerStream(r.Context())
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = stream.Info(r.Context())
	}
	if err == nil && !s.o.Ledger.WaitFor(info.State.LastSeq, time.Now().Add(5*time.Second)) {
		err = errors.New("the ledger projection is behind the stream")
	}
	if err != nil {
		problem.Write(w, unavailable(err))
		return "", false
	}
	if c, ok := s.o.Ledger.ReservationCustomer(scopeFrom(r), id); ok {
		return c, true
	}
	problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such "+what))
	return "", false
}

func (s *Server) getReservation(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	customer, ok := s.reservationCustomer(w, r, id, "reservation")
	if !ok {
		return
	}
	s.reservation(w, r, customer, id)
}

// ownedCommand runs a command on the object id of the path (a reservation or a subscription):
// it decodes the body into body, finds the customer holding the object, decides and appends
// the entry, and answers with show. An error matching tolerated is a retry of a command that
// already happened and is answered like a success.
func (s *Server) ownedCommand(w http.ResponseWriter, r *http.Request, what string, body any, tolerated error,
	decide func(a *projector.Account, id string, now time.Time) (string, any, error), show func(customer, id string)) {
	if p := s.decodeBody(w, r, body); p != nil {
		problem.Write(w, p)
		return
	}
	id := r.PathValue("id")
	customer, ok := s.reservationCustomer(w, r, id, what)
	if !ok {
		return
	}
	now, cmd := s.o.Now(), commandID(r.Context(), scopeFrom(r), customer)
	_, err := s.appendDecided(r.Context(), scopeFrom(r), customer, func(a *projector.Account) (string, any, error) {
		if a.CarriedOut(cmd, id, true) { // this key's commit or release, however long ago
			return "", nil, projector.ErrCarriedOut
		}
		return decide(a, id, now)
	})
	if err != nil && (tolerated == nil || !errors.Is(err, tolerated)) {
		problem.Write(w, s.commandProblem(err))
		return
	}
	show(customer, id)
}

func (s *Server) postCommit(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Amount *events.Credits `json:"amount,omitempty"`
	}
	s.ownedCommand(w, r, "reservation", &b, nil, func(a *projector.Account, id string, now time.Time) (string, any, error) {
		e, err := a.DecideCommit(id, b.Amount, now)
		return events.TypeReservationCommitted, e, err
	}, func(customer, id string) { s.reservation(w, r, customer, id) })
}

func (s *Server) postRelease(w http.ResponseWriter, r *http.Request) {
	s.ownedCommand(w, r, "reservation", &struct{}{}, nil, func(a *projector.Account, id string, now time.Time) (string, any, error) {
		e, err := a.DecideRelease(id, now)
		return events.TypeReservationReleased, e, err
	}, func(customer, id string) { s.reservation(w, r, customer, id) })
}

// entitlementRequest is the body of an entitlement check.
type entitlementRequest struct {
	Customer string          `json:"customer"`
	Feature  string          `json:"feature"`
	Quantity *events.Decimal `json:"quantity,omitempty"`
}

// readEntitlementRequest reads a check's body: a plain one by hand (plainFields), anything
// else — and a plain one whose quantity is no decimal, for the error's wording — strictly.
func readEntitlementRequest(body []byte) (entitlementRequest, *problem.Problem) {
	f, ok := plainFields(body, "customer", "feature", "quantity")
	if ok && (f[0] == nil || f[0][0] == '"') && (f[1] == nil || f[1][0] == '"') {
		b := entitlementRequest{Customer: plainText(f[0]), Feature: plainText(f[1])}
		if f[2] == nil {
			return b, nil
		}
		var q events.Decimal
		if q.UnmarshalJSON(f[2]) == nil {
			b.Quantity = &q
			return b, nil
		}
	}
	var b entitlementRequest
	p := decodeStrict(body, &b) // before the return reads b: the order within one is unspecified
	return b, p
}

func (s *Server) postEntitlementCheck(w http.ResponseWriter, r *http.Request) {
	body, p := s.readBody(w, r)
	var b entitlementRequest
	if p == nil {
		b, p = readEntitlementRequest(body)
	}
	if p != nil {
		problem.Write(w, p)
		return
	}
	switch {
	case b.Customer == "":
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required"))
		return
	case b.Feature == "":
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "feature", "feature is required"))
		return
	case b.Quantity != nil && b.Quantity.Sign() < 0:
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "quantity", "quantity must not be negative"))
		return
	}
	sc, now := scopeFrom(r), s.o.Now()
	var ok bool
	if b.Customer, ok = s.resolveCustomer(w, r, b.Customer, "customer"); !ok {
		return
	}
	var bal, res events.Credits
	var version uint64
	s.o.Ledger.View(sc, b.Customer, func(a *projector.Account, seq uint64) { bal, res, version = a.Balance(now), a.Reserved(now), seq })
	out := entitlementView{Customer: b.Customer, Feature: b.Feature, Balance: bal, Reserved: res,
		EffectiveBalance: projector.SubCredits(bal, res), Version: version}
	f, ok := s.o.Catalog.Feature(sc, b.Feature)
	switch {
	case !ok:
		out.Allowed, out.Reason = false, "unknown_feature"
	case f.Disabled:
		out.Allowed, out.Reason = false, "feature_disabled"
	default:
		var cost events.Credits
		if f.Rule != "" {
			q := events.DecimalFromInt(1)
			if b.Quantity != nil {
				q = *b.Quantity
			}
			if rule, ok := s.o.Catalog.RuleInForce(sc, f.Rule, now); ok {
				c, ok := rating.Round(rating.Cost(rule, q))
				if !ok {
					problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "quantity", "the price of this quantity is out of range"))
					return
				}
				cost = c
			}
		}
		out.EstimatedCost = cost
		out.OverdraftLimit = &f.OverdraftLimit
		if projector.SubCredits(projector.SubCredits(bal, res), cost) >= -f.OverdraftLimit {
			out.Allowed, out.Reason = true, "ok"
		} else {
			out.Allowed, out.Reason = false, "insufficient_credits"
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// entitlementView is the answer of POST /v1/entitlements/check (fields in name order, as the
// JSON of a map would have them).
type entitlementView struct {
	Allowed          bool            `json:"allowed"`
	Balance          events.Credits  `json:"balance"`
	Customer         string          `json:"customer"`
	EffectiveBalance events.Credits  `json:"effective_balance"`
	EstimatedCost    events.Credits  `json:"estimated_cost"`
	Feature          string          `json:"feature"`
	OverdraftLimit   *events.Credits `json:"overdraft_limit,omitempty"`
	Reason           string          `json:"reason"`
	Reserved         events.Credits  `json:"reserved"`
	Version          uint64          `json:"version"`
}

func (s *Server) putFeature(w http.ResponseWriter, r *http.Request) {
	var spec struct {
		Rule           string          `json:"rule,omitempty"`
		OverdraftLimit *events.Credits `json:"overdraft_limit,omitempty"`
		Disabled       bool            `json:"disabled,omitempty"`
	}
	if p := s.decodeBody(w, r, &spec); p != nil {
		problem.Write(w, p)
		return
	}
	sc := scopeFrom(r)
	f, fe := s.o.Catalog.ValidateFeature(sc, r.PathValue("key"), featureSpec(spec.Rule, spec.OverdraftLimit, spec.Disabled))
	if fe != nil {
		problem.Write(w, invalidConfig(fe))
		return
	}
	if _, err := putFeature(r.Context(), s, sc, f); err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, f)
}

func (s *Server) getFeature(w http.ResponseWriter, r *http.Request) {
	getConfig(w, r, "feature", s.o.Catalog.Feature)
}
