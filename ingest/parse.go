package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
)

// Media types accepted by POST /v1/events.
const (
	MediaJSON            = "application/json"
	MediaCloudEvent      = "application/cloudevents+json"
	MediaCloudEventBatch = "application/cloudevents-batch+json"
)

// Limits on one event's identifiers.
const (
	maxIDLen       = 256
	maxTypeLen     = 256
	maxCustomerLen = 256
	maxSourceLen   = 1024
)

// Candidate is one event that passed validation, ready to publish.
type Candidate struct {
	Index int
	Event events.Usage
	Hash  string // of the event as sent, before defaults: tells a retry from a reuse of an id
}

// Rejection reports one event that was not stored.
type Rejection struct {
	Index   int              `json:"index"`
	Problem *problem.Problem `json:"problem"`
}

// wireEvent is an event as producers send it: allot's JSON or a CloudEvent in structured mode.
// Fields stay raw so each one's type can be checked and reported by name.
type wireEvent struct {
	ID          json.RawMessage `json:"id"`
	Type        json.RawMessage `json:"type"`
	Customer    json.RawMessage `json:"customer"`
	Subject     json.RawMessage `json:"subject"`
	Time        json.RawMessage `json:"time"`
	Source      json.RawMessage `json:"source"`
	Data        json.RawMessage `json:"data"`
	SpecVersion json.RawMessage `json:"specversion"`
	ContentType json.RawMessage `json:"datacontenttype"`
	Product     json.RawMessage `json:"product"`
	Env         json.RawMessage `json:"env"`
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
func Parse(scope events.Scope, media string, body []byte, meters MeterSource, now time.Time) ([]Candidate, []Rejection, *problem.Problem) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "Invalid JSON", "the request body is empty")
	}
	if !json.Valid(body) {
		return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "Invalid JSON", describeJSONError(body))
	}
	var raws []json.RawMessage
	switch {
	case body[0] == '[':
		if media == MediaCloudEvent {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "Invalid request",
				"application/cloudevents+json carries one event; send an array as application/cloudevents-batch+json")
		}
		if err := json.Unmarshal(body, &raws); err != nil {
			return nil, nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "Invalid JSON", err.Error())
		}
		if len(raws) == 0 {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "Invalid request", "the batch is empty")
		}
	case body[0] == '{':
		if media == MediaCloudEventBatch {
			return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "Invalid request",
				"application/cloudevents-batch+json must be a JSON array of events")
		}
		raws = []json.RawMessage{body}
	default:
		return nil, nil, problem.New(problem.InvalidRequest, http.StatusBadRequest, "Invalid request",
			"the body must be an event object or an array of events")
	}
	cloud := media == MediaCloudEvent || media == MediaCloudEventBatch
	cands := make([]Candidate, 0, len(raws))
	var rejs []Rejection
	for i, raw := range raws {
		c, p := parseOne(scope, raw, cloud, meters, now)
		if p != nil {
			rejs = append(rejs, Rejection{Index: i, Problem: p})
			continue
		}
		c.Index = i
		cands = append(cands, c)
	}
	return cands, rejs, nil
}

func parseOne(scope events.Scope, raw json.RawMessage, cloud bool, meters MeterSource, now time.Time) (Candidate, *problem.Problem) {
	if len(raw) == 0 || raw[0] != '{' {
		return Candidate{}, problem.Fieldf(problem.InvalidEvent, http.StatusBadRequest, "", "an event must be a JSON object")
	}
	var w wireEvent
	if err := json.Unmarshal(raw, &w); err != nil {
		return Candidate{}, problem.Fieldf(problem.InvalidEvent, http.StatusBadRequest, "", "%v", err)
	}
	var ev events.Usage
	var p *problem.Problem
	if ev.ID, p = requiredString(w.ID, "id", maxIDLen); p != nil {
		return Candidate{}, p
	}
	if ev.Type, p = requiredString(w.Type, "type", maxTypeLen); p != nil {
		return Candidate{}, p
	}
	custField := "customer"
	custRaw := w.Customer
	if isAbsent(custRaw) && !isAbsent(w.Subject) {
		custField, custRaw = "subject", w.Subject
	}
	if ev.Customer, p = requiredString(custRaw, custField, maxCustomerLen); p != nil {
		if isAbsent(custRaw) {
			p.Field, p.Detail = "customer", "customer is required (or the CloudEvents subject)"
		}
		return Candidate{}, p
	}
	if cloud {
		sv, p := requiredString(w.SpecVersion, "specversion", 16)
		if p != nil {
			return Candidate{}, p
		}
		if sv != "1.0" {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "specversion", "specversion %q is not supported; use \"1.0\"", sv)
		}
		if ev.Source, p = requiredString(w.Source, "source", maxSourceLen); p != nil {
			return Candidate{}, p
		}
		if !isAbsent(w.ContentType) {
			ct, p := requiredString(w.ContentType, "datacontenttype", 128)
			if p != nil {
				return Candidate{}, p
			}
			if mt, _, err := mime.ParseMediaType(ct); err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
				return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "datacontenttype", "data must be JSON; got %q", ct)
			}
		}
	} else if !isAbsent(w.Source) {
		if ev.Source, p = requiredString(w.Source, "source", maxSourceLen); p != nil {
			return Candidate{}, p
		}
	}
	for _, f := range []struct {
		name, want string
		raw        json.RawMessage
	}{{"product", scope.Product, w.Product}, {"env", scope.Env, w.Env}} {
		if isAbsent(f.raw) {
			continue
		}
		got, p := requiredString(f.raw, f.name, 64)
		if p != nil {
			return Candidate{}, p
		}
		if got != f.want {
			return Candidate{}, problem.Fieldf(problem.Forbidden, http.StatusForbidden, f.name,
				"this API key writes to %s %q only", f.name, f.want)
		}
	}
	var sentTime string
	if !isAbsent(w.Time) {
		if sentTime, p = requiredString(w.Time, "time", 64); p != nil {
			return Candidate{}, p
		}
		t, err := time.Parse(time.RFC3339Nano, sentTime)
		if err != nil {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "time", "time must be RFC 3339, e.g. 2026-01-02T15:04:05Z; got %q", truncate(sentTime, 40))
		}
		ev.Time = t.UTC()
	}
	if !isAbsent(w.Data) {
		if w.Data[0] != '{' {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "data", "data must be a JSON object")
		}
		dec := json.NewDecoder(bytes.NewReader(w.Data))
		dec.UseNumber()
		if err := dec.Decode(&ev.Data); err != nil {
			return Candidate{}, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "data", "%v", err)
		}
	}
	if meters != nil {
		if p := checkMeters(ev, meters.MetersFor(scope, ev.Type)); p != nil {
			return Candidate{}, p
		}
	}
	// The hash covers the event as sent (time as sent, or none), so a retry of an event
	// without a time still matches its first delivery.
	hashed, err := ev.Encode()
	if err != nil {
		return Candidate{}, problem.Fieldf(problem.InvalidEvent, http.StatusBadRequest, "", "%v", err)
	}
	sum := sha256.Sum256(hashed)
	if ev.Time.IsZero() {
		ev.Time = now.UTC()
	}
	return Candidate{Event: ev, Hash: hex.EncodeToString(sum[:16])}, nil
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
			if _, err := events.DecimalFromJSON(v); err != nil {
				return problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "meter %q needs a decimal number (a JSON number or a string like \"12.5\"): %v", m.Key, err)
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

func isAbsent(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

func requiredString(raw json.RawMessage, field string, maxLen int) (string, *problem.Problem) {
	if isAbsent(raw) {
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s is required", field)
	}
	if raw[0] != '"' {
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must be a string, got %s", field, jsonKind(raw))
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%v", err)
	}
	switch {
	case s == "":
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must not be empty", field)
	case len(s) > maxLen:
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s is longer than %d bytes", field, maxLen)
	case !utf8.ValidString(s) || strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", problem.Fieldf(problem.InvalidField, http.StatusBadRequest, field, "%s must be printable UTF-8", field)
	}
	return s, nil
}

func jsonKind(raw json.RawMessage) string {
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
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
