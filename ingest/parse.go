package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/plainjson"
)

// Media types accepted by POST /v1/events.
const (
	MediaJSON            = "application/json"
	MediaCloudEvent      = "application/cloudevents+json"
	MediaCloudEventBatch = "application/cloudevents-batch+json"
)

var unixEpoch = time.Unix(0, 0).UTC()

// Limits on one event's identifiers.
const (
	maxIDLen       = 256
	maxTypeLen     = 256
	maxCustomerLen = events.MaxCustomerLen
	maxSourceLen   = 1024
)

// Candidate is one event that passed validation, ready to publish.
type Candidate struct {
	Index int
	Event events.Usage
	Hash  string // of the event as sent, before defaults: tells a retry from a reuse of an id
	// Encoded is the canonical JSON to store, when parsing already produced it (the event
	// carried its own time); nil means encode Event.
	Encoded []byte
}

// Rejection reports one event that was not stored.
type Rejection struct {
	Index   int              `json:"index"`
	Problem *problem.Problem `json:"problem"`
}

// MediaKind classifies a Content-Type header; ok is false for unsupported types.
func MediaKind(contentType string) (kind string, ok bool) {
	if contentType == "" {
		return MediaJSON, true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", false
	}
	switch mt {
	case MediaJSON, MediaCloudEvent, MediaCloudEventBatch:
		return mt, true
	}
	return "", false
}

// Parse splits a request body into events and checks each one. A body that is not JSON at
// all, or whose top level has the wrong shape for its media type, is one request-level
// problem; everything else is reported per event. now is used for events that carry no time.
//
// The body is decoded once, numbers kept as json.Number (by plainjson when it is plain, else
// by encoding/json, to the same values), and each event's fields are checked by type switch.
func Parse(scope events.Scope, media string, body []byte, meters MeterSource, now time.Time) ([]Candidate, []Rejection, *problem.Problem) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "the request body is empty")
	}
	// JSON text is UTF-8 (RFC 8259 §8.1). The decoders would replace invalid bytes with U+FFFD,
	// and two events whose ids (or customers) differ only there would become one.
	if !utf8.Valid(body) {
		return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "the body is not valid UTF-8 (JSON text is UTF-8)")
	}
	top, plain := plainjson.Decode(body) // most bodies; the same values encoding/json gives
	if !plain {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&top); err != nil {
			return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, describeJSONError(body))
		}
		if _, err := dec.Token(); err != io.EOF {
			return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "the body holds more than one JSON value")
		}
	}
	var items []any
	switch x := top.(type) {
	case []any:
		if media == MediaCloudEvent {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "application/cloudevents+json carries one event; send an array as application/cloudevents-batch+json")
		}
		if len(x) == 0 {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "the batch is empty")
		}
		items = x
	case map[string]any:
		if media == MediaCloudEventBatch {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "application/cloudevents-batch+json must be a JSON array of events")
		}
		items = []any{x}
	default:
		return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "the body must be an event object or an array of events")
	}
	cloud := media == MediaCloudEvent || media == MediaCloudEventBatch
	cands := make([]Candidate, 0, len(items))
	var rejs []Rejection
	buf := make([]byte, 0, 512)
	for i, item := range items {
		c, p := parseOne(scope, item, cloud, meters, now, &buf)
		if p != nil {
			rejs = append(rejs, Rejection{Index: i, Problem: p})
			continue
		}
		c.Index = i
		cands = append(cands, c)
	}
	return cands, rejs, nil
}

func parseOne(scope events.Scope, item any, cloud bool, meters MeterSource, now time.Time, buf *[]byte) (Candidate, *problem.Problem) {
	w, ok := item.(map[string]any)
	if !ok {
		return Candidate{}, problem.Fieldf(problem.InvalidEvent, http.StatusBadRequest, "", "an event must be a JSON object, got %s", jsonKind(item))
	}
	var ev events.Usage
	var p *problem.Problem
	if ev.ID, p = requiredString(w, "id", maxIDLen); p != nil {
		return Candidate{}, p
	}
	if ev.Type, p = requiredString(w, "type", maxTypeLen); p != nil {
		return Candidate{}, p
	}
	custField := "customer"
	if isAbsent(w, "customer") && !isAbsent(w, "subject") {
		custField = "subject"
	}
	if isAbsent(w, custField) {
		return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "customer", "customer is required (or the CloudEvents subject)")
	}
	if ev.Customer, p = requiredString(w, custField, maxCustomerLen); p != nil {
		return Candidate{}, p
	}
	if cloud {
		sv, p := requiredString(w, "specversion", 16)
		if p != nil {
			return Candidate{}, p
		}
		if sv != "1.0" {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "specversion", "specversion %q is not supported; use \"1.0\"", sv)
		}
		if ev.Source, p = requiredString(w, "source", maxSourceLen); p != nil {
			return Candidate{}, p
		}
		if !isAbsent(w, "datacontenttype") {
			ct, p := requiredString(w, "datacontenttype", 128)
			if p != nil {
				return Candidate{}, p
			}
			if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "datacontenttype", "data must be JSON; got %q", ct)
			}
		}
	} else if !isAbsent(w, "source") {
		if ev.Source, p = requiredString(w, "source", maxSourceLen); p != nil {
			return Candidate{}, p
		}
	}
	for _, f := range [2][2]string{{"product", scope.Product}, {"env", scope.Env}} {
		if isAbsent(w, f[0]) {
			continue
		}
		got, p := requiredString(w, f[0], 64)
		if p != nil {
			return Candidate{}, p
		}
		if got != f[1] {
			return Candidate{}, problem.Fieldf(problem.Forbidden, http.StatusForbidden, f[0], "this API key writes to %s %q only", f[0], f[1])
		}
	}
	if !isAbsent(w, "time") {
		sent, p := requiredString(w, "time", 64)
		if p != nil {
			return Candidate{}, p
		}
		// RFC 3339 allows "t" and "z" in lower case (§5.6) and no comma before the fraction
		// (Go's parser takes one).
		t, err := time.Parse(time.RFC3339Nano, strings.ToUpper(sent))
		if err == nil && strings.Contains(sent, ",") {
			err = errors.New("a comma is no RFC 3339 fraction separator")
		}
		if err != nil {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "time", "time must be RFC 3339, e.g. 2026-01-02T15:04:05Z; got %q", truncate(sent, 40))
		}
		ev.Time = t.UTC()
		// From 1970 in UTC: ClickHouse's DateTime holds no earlier time (a 1969 event was
		// stored as 1970-01-01 05:28:16), and before year 1 the stored event could not even be
		// read back (accepted, then dropped by rating).
		if ev.Time.Before(unixEpoch) {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "time",
				"time %s is before 1970-01-01T00:00:00Z, the earliest usage allot keeps", truncate(sent, 40))
		}
		if ahead := ev.Time.Sub(now); ahead > events.MaxFutureSkew {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "time",
				"time %s is %s ahead of the server clock; events may be dated at most %s ahead", truncate(sent, 40), ahead.Round(time.Second), events.MaxFutureSkew)
		}
	}
	if !isAbsent(w, "data") {
		d, ok := w["data"].(map[string]any)
		if !ok {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "data", "data must be a JSON object, got %s", jsonKind(w["data"]))
		}
		ev.Data = d
	}
	if meters != nil {
		if p := checkMeters(ev, meters.MetersFor(scope, ev.Type)); p != nil {
			return Candidate{}, p
		}
	}
	// The hash covers the event as sent (time as sent, or none), so a retry of an event
	// without a time still matches its first delivery. When the time was sent, the bytes
	// hashed are the bytes stored.
	sentTime := !ev.Time.IsZero()
	enc, err := ev.AppendJSON((*buf)[:0])
	if err != nil {
		return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "data", "%v", err)
	}
	*buf = enc
	sum := sha256.Sum256(enc)
	c := Candidate{Event: ev, Hash: hex.EncodeToString(sum[:16])}
	if sentTime {
		c.Encoded = append([]byte(nil), enc...)
	} else {
		c.Event.Time = now.UTC()
	}
	return c, nil
}

// checkMeters enforces what the meters counting this event need from it: a meter that sums,
// maxes or takes the latest value needs its property to be an exact decimal.
func checkMeters(ev events.Usage, ms []events.Meter) *problem.Problem {
	for _, m := range ms {
		if !m.Matches(ev.Type, ev.Data) || !m.NeedsValue() {
			continue
		}
		field := "data." + m.ValueProperty
		v, ok := ev.Data[m.ValueProperty]
		if !ok || v == nil {
			return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "meter %q needs property %q on %q events", m.Key, m.ValueProperty, m.EventType)
		}
		if m.NumericValue() {
			d, err := events.DecimalFromJSON(v)
			if err != nil {
				return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "meter %q needs a decimal number (a JSON number or a string like \"12.5\"): %v", m.Key, err)
			}
			if !d.SaneQuantity() { // what rating would leave unrated: refused here, where the caller hears it
				return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "meter %q: a quantity may have at most %d digits before the point and %d after it", m.Key, events.MaxQuantityDigits, events.MaxQuantityDigits)
			}
			continue
		}
		switch v.(type) {
		case string, json.Number:
		default:
			return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "meter %q counts distinct values of %q; it must be a string or a number", m.Key, m.ValueProperty)
		}
	}
	return nil
}

func isAbsent(w map[string]any, field string) bool {
	v, ok := w[field]
	return !ok || v == nil
}

func requiredString(w map[string]any, field string, maxLen int) (string, *problem.Problem) {
	v, ok := w[field]
	if !ok || v == nil {
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s is required", field)
	}
	s, ok := v.(string)
	if !ok {
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must be a string, got %s", field, jsonKind(v))
	}
	switch {
	case s == "":
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must not be empty", field)
	case len(s) > maxLen:
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s is longer than %d bytes", field, maxLen)
	case !printable(s):
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must be printable UTF-8", field)
	}
	return s, nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

func jsonKind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case string:
		return "a string"
	default:
		return "a number"
	}
}

// describeJSONError finds where a body stops being JSON, for a useful 400.
func describeJSONError(body []byte) string {
	var v any
	err := json.Unmarshal(body, &v)
	if se, ok := err.(*json.SyntaxError); ok {
		return fmt.Sprintf("the body is not valid JSON: %v (at byte %d)", se, se.Offset)
	}
	if err != nil {
		return "the body is not valid JSON: " + err.Error()
	}
	return "the body is not valid JSON"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
