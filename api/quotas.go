package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/plainjson"
	"github.com/allot-dev/allot/projector"
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
	// At, for adjust only: a time in the window to adjust (default now) — so a use given back
	// lands in the window it was counted in even when a new window has begun since.
	At *time.Time `json:"at,omitempty"`
}

// noAmount, as readQuotaRequest's default, refuses an amount (a reset's body has none).
var noAmount = &events.Decimal{}

// readQuotaRequest decodes the body and the quota; amount defaults to def (nil: required;
// noAmount: refused).
func (s *Server) readQuotaRequest(w http.ResponseWriter, r *http.Request, def *events.Decimal) (events.Quota, string, events.Decimal, bool) {
	q, customer, amt, at, ok := s.readQuotaRequestAt(w, r, def)
	if ok && at != nil {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "at", "at is only for adjust; checks and increments are at the server's time"))
		return q, "", events.Decimal{}, false
	}
	return q, customer, amt, ok
}

// readQuotaRequestAt is readQuotaRequest that also reads at (adjust).
func (s *Server) readQuotaRequestAt(w http.ResponseWriter, r *http.Request, def *events.Decimal) (events.Quota, string, events.Decimal, *time.Time, bool) {
	var b quotaRequest
	body, p := s.readBody(w, r)
	if p == nil {
		var ok bool
		if b.Customer, b.Amount, ok = plainQuotaRequest(body); !ok {
			// Two statements: in "b, p = quotaRequest{}, decodeStrict(body, &b)" the decode
			// runs first and the assignment then empties what it decoded.
			b = quotaRequest{}
			p = decodeStrict(body, &b)
		}
	}
	if p != nil {
		problem.Write(w, p)
		return events.Quota{}, "", events.Decimal{}, nil, false
	}
	q, ok := s.o.Catalog.Quota(scopeFrom(r), r.PathValue("key"))
	if !ok {
		if !s.catalogCaughtUp(w, r) {
			return q, "", events.Decimal{}, nil, false
		}
		if q, ok = s.o.Catalog.Quota(scopeFrom(r), r.PathValue("key")); !ok {
			problem.Write(w, notFound("quota", r.PathValue("key")))
			return q, "", events.Decimal{}, nil, false
		}
	}
	if b.Customer == "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required"))
		return q, "", events.Decimal{}, nil, false
	}
	var amt events.Decimal
	switch {
	case len(b.Amount) > 0 && string(b.Amount) != "null" && def == noAmount:
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "a reset takes no amount: it sets the window's use to zero (adjust adds or gives back an amount)"))
		return q, "", events.Decimal{}, nil, false
	case len(b.Amount) > 0 && string(b.Amount) != "null":
		if err := amt.UnmarshalJSON(b.Amount); err != nil { // a valid JSON value, as json.Unmarshal would pass it
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount must be a decimal number"))
			return q, "", events.Decimal{}, nil, false
		}
		if !amt.SaneQuantity() {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount may have at most %d digits before the point and %d after it", events.MaxQuantityDigits, events.MaxQuantityDigits))
			return q, "", events.Decimal{}, nil, false
		}
	case def != nil:
		amt = *def
	default:
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount is required"))
		return q, "", events.Decimal{}, nil, false
	}
	if b.At != nil && !events.TimeInRange(*b.At) {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "at", "at %s", events.TimeRangeMsg))
		return q, "", events.Decimal{}, nil, false
	}
	customer, ok := s.resolveCustomer(w, r, b.Customer, "customer")
	return q, customer, amt, b.At, ok
}

// plainQuotaRequest reads the body services send on every check and increment —
// {"customer": "...", "amount": "1.5" or 1.5} — without encoding/json's reflection (plainFields);
// false sends it to the strict decoder, which accepts what it accepts and words the errors.
func plainQuotaRequest(body []byte) (customer string, amount json.RawMessage, ok bool) {
	f, ok := plainFields(body, "customer", "amount")
	if !ok || (f[0] != nil && f[0][0] != '"') {
		return "", nil, false
	}
	return plainText(f[0]), f[1], true
}

// plainFields reads a flat JSON object whose members are among keys, each at most once, and
// whose values are strings without escapes or numbers, as clients send the hot requests. It
// returns each key's raw value (nil when absent); anything else reports false.
func plainFields(body []byte, keys ...string) ([][]byte, bool) {
	d := plainjson.Decoder{B: body}
	if !d.Next('{') {
		return nil, false
	}
	out := make([][]byte, len(keys))
	for first := true; ; first = false {
		if d.Next('}') {
			break
		}
		if !first && !d.Next(',') {
			return nil, false
		}
		k, ok := d.String()
		if !ok || !d.Next(':') {
			return nil, false
		}
		i := slices.Index(keys, string(k))
		if i < 0 || out[i] != nil {
			return nil, false
		}
		isString := d.Peek() == '"' // (skips white space)
		from := d.I
		if isString {
			if _, ok := d.String(); !ok {
				return nil, false
			}
		} else {
			end, ok := plainjson.NumberEnd(d.B, from)
			if !ok {
				return nil, false
			}
			d.I = end
		}
		out[i] = body[from:d.I:d.I]
	}
	return out, d.Peek() == 0 && d.I == len(body)
}

// plainText is the string a plain JSON string value holds ("" for nil).
func plainText(raw []byte) string {
	if len(raw) < 2 {
		return ""
	}
	return string(raw[1 : len(raw)-1])
}

// setRateLimitHeaders writes RateLimit-Policy and RateLimit (IETF httpapi draft) for the
// statuses: quota units are whole numbers in the headers (rounded down).
func setRateLimitHeaders(w http.ResponseWriter, quotas []events.Quota, st []projector.QuotaStatus, now time.Time) {
	// Both values are appended to one buffer and cut out of one string, with one slice backing
	// both header entries: this runs on every check and increment.
	var buf [256]byte
	b := buf[:0]
	for i, s := range st {
		if i > 0 {
			b = append(b, ", "...)
		}
		window := int64(math.Round(s.ResetsAt.Sub(s.WindowStart).Seconds()))
		b = strconv.AppendQuote(b, quotas[i].Key) // as %q
		b = appendWholeUnits(append(b, ";q="...), s.Limit)
		b = strconv.AppendInt(append(b, ";w="...), window, 10)
	}
	split := len(b)
	for i, s := range st {
		if i > 0 {
			b = append(b, ", "...)
		}
		reset := int64(math.Ceil(s.ResetsAt.Sub(now).Seconds()))
		b = strconv.AppendQuote(b, quotas[i].Key)
		b = appendWholeUnits(append(b, ";r="...), s.Remaining)
		b = strconv.AppendInt(append(b, ";t="...), max(reset, 0), 10)
	}
	both := string(b)
	vals := []string{both[:split], both[split:]}
	h := w.Header()
	h["Ratelimit-Policy"] = vals[0:1:1] // the canonical form Header.Set would use
	h["Ratelimit"] = vals[1:2:2]
}

// appendWholeUnits appends d's integer part, or 0 when it is negative.
func appendWholeUnits(b []byte, d events.Decimal) []byte {
	if d.Sign() < 0 {
		return append(b, '0')
	}
	start := len(b)
	b, _ = d.AppendText(b)
	if i := bytes.IndexByte(b[start:], '.'); i >= 0 {
		b = b[:start+i]
	}
	if len(b) == start {
		b = append(b, '0')
	}
	return b
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

// AppendJSON appends v's JSON, byte for byte what encoding/json writes (checked by
// TestQuotaStatusViewEncoding): check and increment answer with it on every call.
func (v quotaStatusView) AppendJSON(b []byte) ([]byte, error) {
	var err error
	b = append(b, `{"allowed":`...)
	b = strconv.AppendBool(b, v.Allowed)
	if v.Customer != "" {
		b = append(b, `,"customer":`...)
		b = events.AppendJSONString(b, v.Customer)
	}
	b = append(b, `,"limit":"`...)
	b, _ = v.Limit.AppendText(b)
	b = append(b, `","quota":`...)
	b = events.AppendJSONString(b, v.Quota)
	b = append(b, `,"remaining":"`...)
	b, _ = v.Remaining.AppendText(b)
	b = append(b, `","requested":"`...)
	b, _ = v.Requested.AppendText(b)
	b = appendTime(append(b, `","resets_at":`...), v.ResetsAt, &err)
	b = append(b, `,"used":"`...)
	b, _ = v.Used.AppendText(b)
	b = appendTime(append(b, `","window_start":`...), v.WindowStart, &err)
	return append(b, '}'), err
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
	var stBuf [1]projector.QuotaStatus
	st := stBuf[:0]
	quotas, amounts := [1]events.Quota{q}, [1]events.Decimal{amt}
	s.o.Ledger.View(scopeFrom(r), customer, func(a *projector.Account, _ uint64) {
		st = a.AppendQuotaStatuses(st, quotas[:], amounts[:], now)
	})
	setRateLimitHeaders(w, quotas[:], st, now)
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

// postCustomerQuotasIncrement increments several quotas of one customer all or nothing:
// {"quotas": [{"key": "per-key", "amount": "1"}, {"key": "per-ip"}]} (amount defaults to 1).
// Allowed only if every one has room; otherwise nothing changes and the 429 names every quota
// that had none (DESIGN.md, Quota windows: "for every meter named").
func (s *Server) postCustomerQuotasIncrement(w http.ResponseWriter, r *http.Request) {
	customer, ok := s.customerParam(w, r)
	if !ok {
		return
	}
	var b struct {
		Quotas []struct {
			Key    string          `json:"key"`
			Amount *events.Decimal `json:"amount,omitempty"`
		} `json:"quotas"`
	}
	if p := s.decodeBody(w, r, &b); p != nil {
		problem.Write(w, p)
		return
	}
	if len(b.Quotas) == 0 {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "quotas", "name at least one quota: {\"quotas\": [{\"key\": \"…\"}]}"))
		return
	}
	sc := scopeFrom(r)
	quotas, amounts := make([]events.Quota, len(b.Quotas)), make([]events.Decimal, len(b.Quotas))
	for i, qb := range b.Quotas {
		field := fmt.Sprintf("quotas[%d]", i)
		q, found := s.o.Catalog.Quota(sc, qb.Key)
		if !found {
			if !s.catalogCaughtUp(w, r) {
				return
			}
			if q, found = s.o.Catalog.Quota(sc, qb.Key); !found {
				problem.Write(w, problem.Fieldf(problem.NotFound, http.StatusNotFound, field+".key", "no quota %q in this product and env", qb.Key))
				return
			}
		}
		for _, seen := range quotas[:i] {
			if seen.Key == q.Key {
				problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field+".key", "quota %q is named twice", q.Key))
				return
			}
		}
		quotas[i], amounts[i] = q, events.DecimalFromInt(1)
		if qb.Amount != nil {
			amounts[i] = *qb.Amount
		}
		if amounts[i].Sign() <= 0 {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field+".amount", "amount must be greater than 0"))
			return
		}
		if !amounts[i].SaneQuantity() {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field+".amount", "amount may have at most %d digits before the point and %d after it", events.MaxQuantityDigits, events.MaxQuantityDigits))
			return
		}
	}
	st, err := s.increment(r, customer, quotas, amounts)
	if err != nil {
		var qe *projector.QuotaError
		if errors.As(err, &qe) && errors.Is(err, projector.ErrQuotaExceeded) {
			s.notifyQuotaExceeded(r.Context(), sc, customer, qe.Statuses)
		}
		s.writeQuotaError(w, quotas, err)
		return
	}
	setRateLimitHeaders(w, quotas, st, s.o.Now())
	data := make([]quotaStatusView, len(st))
	for i := range st {
		data[i] = quotaView(st[i], "")
	}
	writeJSON(w, http.StatusOK, map[string]any{"customer": customer, "allowed": true, "quotas": data})
}

// increment decides and appends an all-or-nothing increment of several quotas.
func (s *Server) increment(r *http.Request, customer string, quotas []events.Quota, amounts []events.Decimal) ([]projector.QuotaStatus, error) {
	// On the customer's quota lane, batched with the increments in flight for every customer
	// of the lane (group commit); with an Idempotency-Key the entry carries the command's id,
	// so it is written alone.
	sc := scopeFrom(r)
	return s.incs.Increment(r.Context(), sc, customer, commandID(r.Context(), sc, customer), quotas, amounts, s.o.Now())
}

// quotaCommand appends a reset or an adjustment to the customer's quota lane, in order with
// the lane's increments.
func (s *Server) quotaCommand(r *http.Request, customer string, typ string, e any) error {
	sc := scopeFrom(r)
	return s.incs.Command(r.Context(), sc, customer, commandID(r.Context(), sc, customer), func(*projector.Account) (string, any, error) {
		return typ, e, nil
	})
}

func (s *Server) writeQuotaError(w http.ResponseWriter, quotas []events.Quota, err error) {
	var qe *projector.QuotaError
	if !errors.As(err, &qe) {
		problem.Write(w, s.commandProblem(err))
		return
	}
	now := s.o.Now()
	setRateLimitHeaders(w, quotas, qe.Statuses, now)
	// The figures are the violated quota whose window resets last: the request cannot be
	// admitted before every violated one has room, so that reset is when to retry.
	var violated []string
	var first *projector.QuotaStatus
	for i := range qe.Statuses {
		if !qe.Statuses[i].Allowed {
			violated = append(violated, qe.Statuses[i].Quota)
			if first == nil || qe.Statuses[i].ResetsAt.After(first.ResetsAt) {
				first = &qe.Statuses[i]
			}
		}
	}
	if first == nil {
		first = &qe.Statuses[0]
	}
	ext := map[string]any{"violated-policies": violated, "limit": first.Limit, "used": first.Used, "requested": first.Requested, "resets_at": first.ResetsAt}
	if errors.Is(err, projector.ErrWeightOverLimit) {
		p := problem.New(problem.WeightOverLimit, http.StatusUnprocessableEntity, err.Error()+": it can never be admitted")
		p.Field, p.Extra = "amount", ext
		problem.Write(w, p)
		return
	}
	p := problem.New(problem.QuotaExceeded, http.StatusTooManyRequests, fmt.Sprintf("%s: %s used of %s; the window resets at %s", strings.Join(violated, ", "), first.Used, first.Limit, first.ResetsAt.Format(time.RFC3339)))
	p.Extra = ext
	p.RetryAfter = int(math.Ceil(first.ResetsAt.Sub(now).Seconds()))
	if p.RetryAfter < 1 {
		p.RetryAfter = 1
	}
	problem.Write(w, p)
}

func (s *Server) postQuotaReset(w http.ResponseWriter, r *http.Request) {
	q, customer, _, ok := s.readQuotaRequest(w, r, noAmount)
	if !ok {
		return
	}
	now := s.o.Now()
	err := s.quotaCommand(r, customer, events.TypeQuotaReset, events.QuotaReset{Customer: customer, Quota: q.Key, Period: q.Period, At: now.UTC()})
	if err != nil {
		problem.Write(w, s.commandProblem(err))
		return
	}
	s.writeQuotaStatus(w, r, q, customer, now)
}

func (s *Server) postQuotaAdjust(w http.ResponseWriter, r *http.Request) {
	q, customer, amt, at, ok := s.readQuotaRequestAt(w, r, nil)
	if !ok {
		return
	}
	if amt.IsZero() {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "amount", "amount must not be 0"))
		return
	}
	now := s.o.Now()
	when := now.UTC()
	if at != nil {
		if at.After(now.Add(events.MaxFutureSkew)) {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "at", "at must not be in a window that has not begun"))
			return
		}
		when = at.UTC()
	}
	sc := scopeFrom(r)
	e := events.QuotaAdjusted{Customer: customer, Quota: q.Key, Amount: amt, Period: q.Period, At: when}
	err := s.incs.Command(r.Context(), sc, customer, commandID(r.Context(), sc, customer), func(a *projector.Account) (string, any, error) {
		if amt.Sign() > 0 && !a.CountLands(q.Key, q.Period, when) {
			return "", nil, &projector.FieldError{Field: "at", Msg: "at is in a window older than every window kept for this customer's quota: the adjustment would count nowhere"}
		}
		return events.TypeQuotaAdjusted, e, nil
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
	customer, ok := s.customerParam(w, r)
	if !ok {
		return
	}
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

// catalogCaughtUp makes sure this process's catalog holds every configuration change written so
// far, before a lookup that missed is answered as a miss: a quota or plan just created through
// another process is not yet here, and a 404 (stored for an Idempotency-Key) would outlive the
// moment. When it cannot catch up it writes a 503 — retryable, never stored — and says false.
func (s *Server) catalogCaughtUp(w http.ResponseWriter, r *http.Request) bool {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	stream, err := s.o.JS.Stream(ctx, bus.ConfigStream)
	var info *jetstream.StreamInfo
	if err == nil {
		info, err = stream.Info(ctx)
	}
	if err == nil {
		err = s.o.Catalog.WaitFor(ctx, info.State.LastSeq)
	}
	if err != nil {
		problem.Write(w, unavailable(fmt.Errorf("the configuration here is behind the config stream: %w", err)))
		return false
	}
	return true
}
