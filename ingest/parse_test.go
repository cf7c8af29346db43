package ingest

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
)

type meterList []events.Meter

func (ml meterList) MetersFor(_ events.Scope, typ string) []events.Meter {
	var out []events.Meter
	for _, m := range ml {
		if m.EventType == typ {
			out = append(out, m)
		}
	}
	return out
}

var (
	scope  = events.Scope{Product: "acme", Env: "test"}
	now    = time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	meters = meterList{
		{Key: "tokens", EventType: "llm", Aggregation: events.AggSum, ValueProperty: "tokens"},
		{Key: "gpu", EventType: "job", Aggregation: events.AggMax, ValueProperty: "gpus", Filters: map[string]string{"kind": "gpu"}},
		{Key: "users", EventType: "login", Aggregation: events.AggUniqueCount, ValueProperty: "user"},
		{Key: "calls", EventType: "llm", Aggregation: events.AggCount},
	}
)

func TestParseRejectsPerEvent(t *testing.T) {
	tests := []struct {
		name, event, field string
		status             int
	}{
		{"missing id", `{"type":"llm","customer":"c","data":{"tokens":1}}`, "id", 400},
		{"empty id", `{"id":"","type":"llm","customer":"c","data":{"tokens":1}}`, "id", 400},
		{"numeric id", `{"id":7,"type":"llm","customer":"c","data":{"tokens":1}}`, "id", 400},
		{"missing type", `{"id":"e","customer":"c"}`, "type", 400},
		{"type is an object", `{"id":"e","type":{},"customer":"c"}`, "type", 400},
		{"missing customer", `{"id":"e","type":"x"}`, "customer", 400},
		{"customer is a number", `{"id":"e","type":"x","customer":12}`, "customer", 400},
		{"control char in customer", `{"id":"e","type":"x","customer":"a\u0000b"}`, "customer", 400},
		{"long id", `{"id":"` + strings.Repeat("x", 257) + `","type":"x","customer":"c"}`, "id", 400},
		{"bad time", `{"id":"e","type":"x","customer":"c","time":"yesterday"}`, "time", 400},
		{"time is a number", `{"id":"e","type":"x","customer":"c","time":1700000000}`, "time", 400},
		{"time too far ahead", `{"id":"e","type":"x","customer":"c","time":"2026-05-01T10:05:01Z"}`, "time", 400},
		// Year 0 in UTC: stored as "-0001-12-31T23:00:00Z", which nothing can read back.
		{"time before year 1 in UTC", `{"id":"e","type":"x","customer":"c","time":"0001-01-01T00:00:00+01:00"}`, "time", 400},
		// Go's zero time means "no time sent": it was replaced by the receive time.
		{"the zero time", `{"id":"e","type":"x","customer":"c","time":"0001-01-01T00:00:00Z"}`, "time", 400},
		// ClickHouse's DateTime starts in 1970.
		{"time before 1970", `{"id":"e","type":"x","customer":"c","time":"1969-12-31T23:59:59Z"}`, "time", 400},
		{"data is an array", `{"id":"e","type":"x","customer":"c","data":[1]}`, "data", 400},
		{"non-decimal quantity", `{"id":"e","type":"llm","customer":"c","data":{"tokens":"lots"}}`, "data.tokens", 400},
		{"quantity is a bool", `{"id":"e","type":"llm","customer":"c","data":{"tokens":true}}`, "data.tokens", 400},
		{"quantity missing", `{"id":"e","type":"llm","customer":"c","data":{}}`, "data.tokens", 400},
		{"quantity null", `{"id":"e","type":"llm","customer":"c","data":{"tokens":null}}`, "data.tokens", 400},
		{"filtered meter applies", `{"id":"e","type":"job","customer":"c","data":{"kind":"gpu","gpus":"two"}}`, "data.gpus", 400},
		{"unique value is an object", `{"id":"e","type":"login","customer":"c","data":{"user":{}}}`, "data.user", 400},
		{"other product", `{"id":"e","type":"x","customer":"c","product":"globex"}`, "product", 403},
		{"other env", `{"id":"e","type":"x","customer":"c","env":"live"}`, "env", 403},
		{"not an object", `"hello"`, "", 400},
	}
	// Up to events.MaxFutureSkew ahead of the server clock is fine.
	if _, rejs, p := Parse(scope, MediaJSON, []byte(`{"id":"e","type":"x","customer":"c","time":"2026-05-01T10:05:00Z"}`), meters, now); p != nil || len(rejs) != 0 {
		t.Fatalf("an event 5m ahead was refused: %v %v", p, rejs)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := `{"id":"ok","type":"llm","customer":"c","data":{"tokens":"1.5"}}`
			cands, rejs, p := Parse(scope, MediaJSON, []byte("["+good+","+tt.event+"]"), meters, now)
			require.Nil(t, p)
			require.Len(t, cands, 1, "the good event must survive a bad neighbour")
			assert.Equal(t, 0, cands[0].Index)
			require.Len(t, rejs, 1)
			assert.Equal(t, 1, rejs[0].Index)
			assert.Equal(t, tt.field, rejs[0].Problem.Field)
			assert.Equal(t, tt.status, rejs[0].Problem.Status)
			assert.True(t, strings.HasPrefix(rejs[0].Problem.Type, problem.TypeBase))
		})
	}
}

func TestParseAccepts(t *testing.T) {
	body := `[
	  {"id":"a","type":"llm","customer":"c1","data":{"tokens":12.50}},
	  {"id":"b","type":"llm","customer":"c1","data":{"tokens":"100000000000000000000.000001"},"time":"2026-04-30T23:59:59.5+02:00"},
	  {"id":"c","type":"job","customer":"c2","data":{"kind":"cpu","gpus":"n/a"}},
	  {"id":"d","type":"login","customer":"c3","data":{"user":42}},
	  {"id":"e","type":"other","customer":"user@example.com","product":"acme","env":"test"}
	]`
	cands, rejs, p := Parse(scope, MediaJSON, []byte(body), meters, now)
	require.Nil(t, p)
	require.Empty(t, rejs)
	require.Len(t, cands, 5)
	assert.Equal(t, now, cands[0].Event.Time, "a missing time is the receive time")
	assert.Equal(t, time.Date(2026, 4, 30, 21, 59, 59, 5e8, time.UTC), cands[1].Event.Time)
	q, err := events.DecimalFromJSON(cands[1].Event.Data["tokens"])
	require.NoError(t, err)
	assert.Equal(t, "100000000000000000000.000001", q.String(), "quantities are exact")
	enc, err := cands[0].Event.Encode()
	require.NoError(t, err)
	assert.Contains(t, string(enc), `"tokens":12.50`, "numbers are stored as sent")
}

func TestParseHashIgnoresReceiveTime(t *testing.T) {
	ev := `{"id":"a","type":"x","customer":"c"}`
	c1, _, _ := Parse(scope, MediaJSON, []byte(ev), nil, now)
	c2, _, _ := Parse(scope, MediaJSON, []byte(ev), nil, now.Add(time.Hour))
	assert.Equal(t, c1[0].Hash, c2[0].Hash, "a retry later is the same event")
	c3, _, _ := Parse(scope, MediaJSON, []byte(`{"id":"a","type":"x","customer":"c","data":{"n":1}}`), nil, now)
	assert.NotEqual(t, c1[0].Hash, c3[0].Hash)
}

func TestParseRequestLevelProblems(t *testing.T) {
	tests := []struct{ name, media, body string }{
		{"empty", MediaJSON, ""},
		{"invalid JSON", MediaJSON, `{"id":`},
		{"trailing garbage", MediaJSON, `{"id":"a"} x`},
		{"empty batch", MediaJSON, `[]`},
		{"scalar", MediaJSON, `42`},
		{"batch as single CloudEvent", MediaCloudEvent, `[{"id":"a"}]`},
		{"object as CloudEvents batch", MediaCloudEventBatch, `{"id":"a"}`},
		// Decoded, both ids would read "ev-\uFFFD": two events, one id, one of them lost.
		{"invalid UTF-8", MediaJSON, "[{\"id\":\"ev-\xff\",\"type\":\"x\",\"customer\":\"c\"},{\"id\":\"ev-\xfe\",\"type\":\"x\",\"customer\":\"c\"}]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cands, rejs, p := Parse(scope, tt.media, []byte(tt.body), meters, now)
			require.NotNil(t, p)
			assert.Equal(t, http.StatusBadRequest, p.Status)
			assert.Empty(t, cands)
			assert.Empty(t, rejs)
		})
	}
}

func TestParseCloudEvents(t *testing.T) {
	ok := `{"specversion":"1.0","id":"x1","source":"/svc","type":"llm","subject":"cust-9","time":"2026-05-01T09:00:00Z","datacontenttype":"application/json","data":{"tokens":3}}`
	cands, rejs, p := Parse(scope, MediaCloudEventBatch, []byte("["+ok+`,{"specversion":"0.3","id":"x2","source":"/s","type":"t","subject":"c"},{"specversion":"1.0","id":"x3","type":"t","subject":"c"},{"specversion":"1.0","id":"x4","source":"/s","type":"t","subject":"c","datacontenttype":"text/plain","data":{}}]`), meters, now)
	require.Nil(t, p)
	require.Len(t, cands, 1)
	assert.Equal(t, "cust-9", cands[0].Event.Customer)
	assert.Equal(t, "/svc", cands[0].Event.Source)
	require.Len(t, rejs, 3)
	assert.Equal(t, "specversion", rejs[0].Problem.Field)
	assert.Equal(t, "source", rejs[1].Problem.Field)
	assert.Equal(t, "datacontenttype", rejs[2].Problem.Field)
}

func TestBinaryCloudEvent(t *testing.T) {
	h := http.Header{}
	h.Set("Ce-Specversion", "1.0")
	h.Set("Ce-Id", "b1")
	h.Set("Ce-Source", "/svc")
	h.Set("Ce-Type", "llm")
	h.Set("Ce-Subject", "cust-1")
	h.Set("Content-Type", "application/json")
	require.True(t, IsBinaryCloudEvent(h))
	body, p := BinaryToStructured(h, []byte(`{"tokens":"2"}`))
	require.Nil(t, p)
	cands, rejs, p := Parse(scope, MediaCloudEvent, body, meters, now)
	require.Nil(t, p)
	require.Empty(t, rejs)
	assert.Equal(t, "b1", cands[0].Event.ID)
	assert.Equal(t, "cust-1", cands[0].Event.Customer)
	h.Set("Content-Type", "text/plain")
	_, p = BinaryToStructured(h, []byte(`hi`))
	require.NotNil(t, p)
	assert.Equal(t, http.StatusUnsupportedMediaType, p.Status)
}

func TestMediaKind(t *testing.T) {
	for in, want := range map[string]string{"": MediaJSON, "application/json; charset=utf-8": MediaJSON, "application/cloudevents+json": MediaCloudEvent, "application/cloudevents-batch+json": MediaCloudEventBatch} {
		got, ok := MediaKind(in)
		assert.True(t, ok, in)
		assert.Equal(t, want, got)
	}
	for _, bad := range []string{"text/plain", "application/x-www-form-urlencoded", ";;"} {
		_, ok := MediaKind(bad)
		assert.False(t, ok, bad)
	}
}
