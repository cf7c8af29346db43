package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

func (s *Server) listRules(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"data": s.o.Catalog.Rules(scopeFrom(r)), "next_cursor": nil})
}

func (s *Server) getRule(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	vs := s.o.Catalog.RuleVersions(scopeFrom(r), key)
	if len(vs) == 0 {
		problem.Write(w, notFound("rule", key))
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
	if p := decodeStrict(body, &spec); p != nil {
		problem.Write(w, p)
		return
	}
	sc := scopeFrom(r)
	rule, fe := s.o.Catalog.ValidateRule(sc, r.PathValue("key"), spec, s.o.Now())
	if fe != nil {
		problem.Write(w, invalidConfig(fe))
		return
	}
	stored, err := catalog.PutRule(r.Context(), s.o.JS, s.o.Catalog, sc, rule, s.o.Now(), false)
	if err != nil {
		s.o.Log.Error("storing rule", "err", err)
		problem.Write(w, &problem.Problem{Type: problem.TypeBase + problem.Unavailable, Title: problem.Title(problem.Unavailable), Status: http.StatusServiceUnavailable, Detail: err.Error(), RetryAfter: 1})
		return
	}
	writeJSON(w, http.StatusCreated, stored)
}

// jsonProblem turns an error decoding body into v into a 400 that names the field where it
// can: encoding/json names it for a value of the wrong JSON type, and for an unknown field
// says which; an error from a field's own decoder (an amount of seven decimals, a time that is
// not RFC 3339) names nothing, so each member of the object is decoded alone until one fails.
func jsonProblem(body []byte, v any, err error) *problem.Problem {
	var ute *json.UnmarshalTypeError
	if errors.As(err, &ute) && ute.Field != "" {
		return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, ute.Field, "%s must be %s, got %s", ute.Field, ute.Type, ute.Value)
	}
	if name, ok := strings.CutPrefix(err.Error(), `json: unknown field "`); ok {
		name = strings.TrimSuffix(name, `"`)
		if name == "" { // no field to name: the body is not the shape the endpoint takes
			return problem.New(problem.InvalidJSON, http.StatusBadRequest, `a member with an empty name ("") is not a field of this body`)
		}
		return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, name, "unknown field %q", name)
	}
	var members map[string]json.RawMessage
	if t := reflect.TypeOf(v); t != nil && t.Kind() == reflect.Pointer && json.Unmarshal(body, &members) == nil {
		names := slices.Sorted(maps.Keys(members)) // the same field named every time
		for _, name := range names {
			one, _ := json.Marshal(map[string]json.RawMessage{name: members[name]})
			if ferr := json.Unmarshal(one, reflect.New(t.Elem()).Interface()); ferr != nil {
				if errors.As(ferr, &ute) && ute.Field != "" {
					name = ute.Field // nested: the path encoding/json gives
				}
				return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, name, "%s: %s", name, strings.TrimPrefix(ferr.Error(), "json: "))
			}
		}
	}
	return problem.New(problem.InvalidJSON, http.StatusBadRequest, err.Error())
}

// ledgerEntry is one entry of GET /v1/customers/{id}/ledger. Rating writes its results in
// per-customer batches (usage.rated.v1); the API shows each debit and unrated event as an
// entry of its own.
type ledgerEntry struct {
	Seq   uint64          `json:"seq"`
	Index int             `json:"index"`
	Type  string          `json:"type"`
	Time  string          `json:"recorded_at"`
	Entry json.RawMessage `json:"entry"`
}

// ledgerCursor is where a page ends: the stream sequence and item to continue from, and whose
// ledger it pages (a cursor given for one customer, used on another's ledger, would skip that
// ledger's entries before the sequence).
type ledgerCursor struct {
	Seq   uint64 `json:"s"`
	Item  int    `json:"i"`
	Owner string `json:"o"`
}

// cursorOwner names a customer's ledger in its cursors: a short hash of product, env and
// customer.
func cursorOwner(sc events.Scope, customer string) string {
	sum := sha256.Sum256([]byte(sc.String() + "\x00" + customer))
	return hex.EncodeToString(sum[:8])
}

func (c ledgerCursor) String() string { return encodeCursor(c) }

func parseLedgerCursor(s string) (ledgerCursor, bool) {
	var c ledgerCursor
	if !decodeCursor(s, &c) || c.Seq == 0 || c.Item < 0 {
		return ledgerCursor{}, false
	}
	return c, true
}

// encodeCursor is a cursor as the API gives it out: its JSON, base64url. Opaque to clients,
// and checked when it comes back (decodeCursor, then the cursor's own checks).
func encodeCursor(c any) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string, c any) bool {
	b, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil && json.Unmarshal(b, c) == nil
}

const maxLedgerPage = 500

// getLedger pages through the customer's ledger subject, oldest first. It folds the
// customer's entries from the first, as the balance projection does, so that each usage debit
// shows the blocks it burned (allocated at fold time, not written by rating) and a copy a
// re-rate wrote after a crash is left out exactly where the balance leaves it out. Where a
// page ends, the fold as it is before that entry is kept (ledgerCheckpoints), and the next
// page folds on from it: paging through a customer reads each entry about once. A cursor with
// no checkpoint here (old, or from another process) folds from the first entry again.
func (s *Server) getLedger(w http.ResponseWriter, r *http.Request) {
	sc := scopeFrom(r)
	customer, ok := s.customerParam(w, r)
	if !ok {
		return
	}
	limit := 50
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxLedgerPage {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "limit", "limit must be a whole number from 1 to %d", maxLedgerPage))
			return
		}
		limit = n
	}
	owner := cursorOwner(sc, customer)
	cur := ledgerCursor{Seq: 1, Owner: owner}
	if c := r.URL.Query().Get("cursor"); c != "" {
		var ok bool
		if cur, ok = parseLedgerCursor(c); !ok {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor is not one this API gave out"))
			return
		}
		if cur.Owner != owner {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor pages another customer's ledger (or another product's or env's)"))
			return
		}
	}
	ctx := r.Context()
	stream, err := s.ledgerStream(ctx)
	if err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	subject := events.LedgerSubject(sc.Product, sc.Env, customer)
	data := make([]ledgerEntry, 0, limit)
	var next any
	// The customer's last entry as the stream's leader knows it (any replica answers a direct
	// get, and one that lags would end the page before an entry just acknowledged).
	last, err := projector.LastSubjectSeq(ctx, s.o.JS, stream.CachedInfo().Config.Name, subject)
	if err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	if last == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"data": data, "next_cursor": next})
		return
	}
	// Fold on from where the previous page ended when that is known, else from the first entry.
	fold, from := projector.NewLedger(), uint64(1)
	if cur.Seq > 1 {
		if st, ok := s.ledgerPages.get(checkpointKey{sc, customer, cur.Seq}); ok && fold.UnmarshalJSON(st) == nil {
			from = cur.Seq
		} else {
			fold = projector.NewLedger()
		}
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
	if err == nil {
		var it jetstream.MessagesContext
		if it, err = cons.Messages(jetstream.PullMaxMessages(512)); err == nil {
			defer it.Stop()
			for next == nil {
				var m jetstream.Msg
				if m, err = it.Next(jetstream.NextContext(ctx)); err != nil {
					break
				}
				md, merr := m.Metadata()
				if merr != nil { // cannot tell where it is in the stream: stop, never wait on
					err = merr
					break
				}
				s.ledgerFolded.Add(1)
				seq, typ := md.Sequence.Stream, m.Headers().Get(events.HeaderType)
				var items []ledgerItem
				var xerr error
				if seq >= cur.Seq {
					items, xerr = expandEntry(typ, m.Data())
					shown := len(items)
					if seq == cur.Seq {
						shown -= cur.Item
					}
					if shown > limit-len(data) {
						// The page ends in this entry: keep the fold as it is before it, where
						// the next page starts.
						if st, merr := fold.MarshalJSON(); merr == nil {
							s.ledgerPages.put(checkpointKey{sc, customer, seq}, st)
						}
					}
				}
				applied, ferr := fold.ApplyItems(seq, m.Subject(), typ, m.Data())
				for len(applied) > 0 && applied[len(applied)-1].Quota { // quota uses are not shown
					applied = applied[:len(applied)-1]
				}
				if seq >= cur.Seq {
					if xerr != nil || ferr != nil || len(applied) != len(items) {
						s.o.Log.Error("unreadable ledger entry", "seq", seq, "err", errors.Join(xerr, ferr))
						items, applied = []ledgerItem{{typ: typ, raw: m.Data()}}, []projector.Applied{{}}
					}
					if seq != cur.Seq {
						cur.Seq, cur.Item = seq, 0
					}
					at := md.Timestamp.UTC().Format(time.RFC3339Nano)
					for ; cur.Item < len(items); cur.Item++ {
						if len(data) == limit {
							next = cur.String() // resumes at this item
							break
						}
						it, ap := items[cur.Item], applied[cur.Item]
						if ap.Skipped && (it.debit != nil || it.unrated != nil) {
							continue // a re-rate's copy: the balance left it out too
						}
						raw := it.raw
						if it.debit != nil && len(it.debit.Allocations) == 0 {
							raw = withAllocations(raw, ap.Allocations)
						}
						data = append(data, ledgerEntry{Seq: seq, Index: cur.Item, Type: it.typ, Time: at, Entry: raw})
					}
					if next == nil {
						cur.Seq, cur.Item = seq+1, 0
					}
				}
				if seq >= last {
					break
				}
			}
		}
	}
	if err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "next_cursor": next})
}

// withAllocations is a debit item's JSON with the blocks the fold burned for it added.
func withAllocations(raw json.RawMessage, allocs []events.Allocation) json.RawMessage {
	raw = bytes.TrimSpace(raw)
	if len(raw) < 2 || raw[len(raw)-1] != '}' {
		return raw
	}
	if allocs == nil {
		allocs = []events.Allocation{}
	}
	a, err := json.Marshal(allocs)
	if err != nil {
		return raw
	}
	out := make([]byte, 0, len(raw)+len(a)+16)
	out = append(out, raw[:len(raw)-1]...)
	if len(bytes.TrimSpace(raw[1:len(raw)-1])) > 0 {
		out = append(out, ',')
	}
	out = append(out, `"allocations":`...)
	out = append(out, a...)
	return append(out, '}')
}

type ledgerItem struct {
	typ     string
	raw     json.RawMessage
	debit   *events.UsageDebited
	unrated *events.UsageUnrated
}

// expandEntry splits a ledger message into the entries the API shows.
func expandEntry(typ string, data []byte) ([]ledgerItem, error) {
	if typ == events.TypeReservationsCreated { // each hold as if written alone
		var r struct {
			Reservations []json.RawMessage `json:"reservations"`
		}
		if err := json.Unmarshal(data, &r); err != nil {
			return nil, err
		}
		items := make([]ledgerItem, len(r.Reservations))
		for i, raw := range r.Reservations {
			items[i] = ledgerItem{typ: events.TypeReservationCreated, raw: raw}
		}
		return items, nil
	}
	if typ != events.TypeUsageRated {
		return []ledgerItem{{typ: typ, raw: data}}, nil
	}
	var r struct {
		Debits  []json.RawMessage `json:"debits"`
		Unrated []json.RawMessage `json:"unrated"`
	}
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	items := make([]ledgerItem, 0, len(r.Debits)+len(r.Unrated))
	for _, raw := range r.Debits {
		var d events.UsageDebited
		if err := json.Unmarshal(raw, &d); err != nil {
			return nil, err
		}
		typ := events.TypeUsageDebited
		items = append(items, ledgerItem{typ: typ, raw: raw, debit: &d})
	}
	for _, raw := range r.Unrated {
		var u events.UsageUnrated
		if err := json.Unmarshal(raw, &u); err != nil {
			return nil, err
		}
		items = append(items, ledgerItem{typ: events.TypeUsageUnrated, raw: raw, unrated: &u})
	}
	return items, nil
}

// getConfig answers GET for one configuration object ({key}) of the request's scope, or 404.
func getConfig[T any](w http.ResponseWriter, r *http.Request, what string, lookup func(events.Scope, string) (T, bool)) {
	v, ok := lookup(scopeFrom(r), r.PathValue("key"))
	if !ok {
		problem.Write(w, notFound(what, r.PathValue("key")))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// notFound answers for a configuration object (meter, rule, feature, quota, plan) that does
// not exist in the request's scope.
func notFound(what, key string) *problem.Problem {
	return problem.New(problem.NotFound, http.StatusNotFound, fmt.Sprintf("no %s %q", what, key))
}

// invalidConfig answers for a configuration object that fails validation, naming the field.
func invalidConfig(fe *catalog.FieldError) *problem.Problem {
	return problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, fe.Field, "%s", fe.Msg)
}

func unavailable(err error) *problem.Problem {
	return &problem.Problem{Type: problem.TypeBase + problem.Unavailable, Title: problem.Title(problem.Unavailable), Status: http.StatusServiceUnavailable, Detail: err.Error(), RetryAfter: 1}
}
