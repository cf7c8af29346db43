package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
)

// inFlightTimeout is how long a request may hold its key before another may take it over: a
// process that died mid-request must not block the key for a day.
const inFlightTimeout = time.Minute

type idemRecord struct {
	State       string    `json:"state"` // in_flight or done
	RequestHash string    `json:"request_hash"`
	Started     time.Time `json:"started"`
	// Who holds an in_flight key: the node (Options.Node) and its incarnation (one per
	// process start). A key held by an earlier incarnation of this very node was abandoned
	// by a process that died, and is taken over at once instead of after inFlightTimeout.
	Node        string      `json:"node,omitempty"`
	Incarnation string      `json:"incarnation,omitempty"`
	Status      int         `json:"status,omitempty"`
	ContentType string      `json:"content_type,omitempty"`
	Headers     http.Header `json:"headers,omitempty"` // replayedHeaders the answer had
	// Answer is the answer's body exactly as it was sent (base64 in the record), so a replay
	// is the same bytes. Body is how records stored before it kept the body: as JSON, which
	// compacts and HTML-escapes it on the way in. Both are written, so a process of the version
	// before (a rolling upgrade) still replays a new record.
	Answer []byte          `json:"answer,omitempty"`
	Body   json.RawMessage `json:"body,omitempty"`
}

// replayedHeaders are the response headers a replay gives back besides Content-Type: what a
// client acts on (where the object is, how much quota is left, how long to wait).
var replayedHeaders = []string{"Location", "Retry-After", "RateLimit", "RateLimit-Policy", "Cache-Control"}

// requestHash is what makes two requests with one Idempotency-Key the same request: method,
// path, media type (parameters such as charset left out), the CloudEvents attributes a
// binary-mode event carries in ce-* headers (its id, type, subject…), and the body.
func requestHash(r *http.Request, body []byte) string {
	h := sha256.New()
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mt = r.Header.Get("Content-Type")
	}
	fmt.Fprintf(h, "%s %s\x00%s\x00", r.Method, r.URL.Path, strings.ToLower(mt))
	var ce []string
	for name := range r.Header {
		if strings.HasPrefix(strings.ToLower(name), "ce-") {
			ce = append(ce, name)
		}
	}
	slices.Sort(ce)
	for _, name := range ce {
		fmt.Fprintf(h, "%s:%q\x00", strings.ToLower(name), r.Header.Values(name))
	}
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

type idemKeyCtx struct{}

func idempotencyKeyFrom(r *http.Request) string {
	k, _ := r.Context().Value(idemKeyCtx{}).(string)
	return k
}

type captureWriter struct {
	http.ResponseWriter
	status int
	buf    bytes.Buffer
}

func (c *captureWriter) WriteHeader(code int) {
	c.status = code
	c.ResponseWriter.WriteHeader(code)
}

func (c *captureWriter) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.buf.Write(b)
	return c.ResponseWriter.Write(b)
}

// idempotent implements Idempotency-Key (DESIGN.md, Idempotency) for a POST handler: the key
// is scoped by product and env; a retry with the same request gets the stored response with
// Idempotent-Replayed: true; the same key with another request is 422; while the first is in
// flight, 409 with Retry-After. 5xx and 429 answers are not stored. Without the header the
// handler runs as is.
func (s *Server) idempotent(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		key := r.Header.Get("Idempotency-Key")
		if key == "" || s.o.Idempotency == nil {
			h(w, r)
			return
		}
		if len(key) > 255 {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "Idempotency-Key", "at most 255 characters"))
			return
		}
		body, p := s.readBody(w, r)
		if p != nil {
			problem.Write(w, p)
			return
		}
		reqHash := requestHash(r, body)
		ks := sha256.Sum256([]byte(scopeFrom(r).String() + "\x00" + key))
		kvKey := hex.EncodeToString(ks[:])
		ctx := r.Context()
		rec := idemRecord{State: "in_flight", RequestHash: reqHash, Started: time.Now().UTC(), Node: s.o.Node, Incarnation: s.incarnation}
		rb, _ := json.Marshal(rec)
		rev, err := s.o.Idempotency.Create(ctx, kvKey, rb)
		if errors.Is(err, jetstream.ErrKeyExists) {
			var taken bool
			rev, taken = s.replayOrTakeOver(ctx, w, kvKey, reqHash, rb)
			if !taken {
				return
			}
			err = nil
		}
		if err != nil {
			problem.Write(w, unavailable(err))
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		cw := &captureWriter{ResponseWriter: w}
		h(cw, r.WithContext(context.WithValue(ctx, idemKeyCtx{}, key)))
		// Not stored: a 5xx (nothing is known to have happened) and a 429 (nothing happened,
		// and the same request is worth sending again once Retry-After has passed). A retry
		// runs the request again, which the command ids in the ledger keep from applying twice.
		if cw.status >= 500 || cw.status == 0 || cw.status == http.StatusTooManyRequests {
			s.o.Idempotency.Delete(context.WithoutCancel(ctx), kvKey, jetstream.LastRevision(rev))
			return
		}
		done := idemRecord{State: "done", RequestHash: reqHash, Started: rec.Started, Status: cw.status,
			ContentType: cw.Header().Get("Content-Type"), Answer: cw.buf.Bytes()}
		if body := bytes.TrimSpace(cw.buf.Bytes()); json.Valid(body) {
			done.Body = json.RawMessage(body)
		}
		for _, name := range replayedHeaders {
			if v := cw.Header().Values(name); len(v) > 0 {
				if done.Headers == nil {
					done.Headers = http.Header{}
				}
				done.Headers[name] = v
			}
		}
		db, _ := json.Marshal(done)
		if _, err := s.o.Idempotency.Update(context.WithoutCancel(ctx), kvKey, db, rev); err != nil {
			// Not stored (an answer over the bucket's value limit, say): the key must not stay
			// in flight, answering 409 to every retry for a minute; a retry runs again.
			s.o.Log.Warn("storing idempotent response; the key is released", "err", err, "bytes", len(db))
			s.o.Idempotency.Delete(context.WithoutCancel(ctx), kvKey, jetstream.LastRevision(rev))
		}
	}
}

// replayOrTakeOver answers a request whose key exists. It returns taken=true (with the new
// revision) when the earlier request was abandoned in flight and this one takes the key over.
func (s *Server) replayOrTakeOver(ctx context.Context, w http.ResponseWriter, kvKey, reqHash string, inflight []byte) (uint64, bool) {
	e, err := s.o.Idempotency.Get(ctx, kvKey)
	if err != nil {
		problem.Write(w, unavailable(err))
		return 0, false
	}
	var rec idemRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		problem.Write(w, unavailable(err))
		return 0, false
	}
	if rec.RequestHash != reqHash {
		problem.Write(w, problem.New(problem.IdempotencyKeyReused, http.StatusUnprocessableEntity, "this Idempotency-Key was used with a different request; use a new key for a new request"))
		return 0, false
	}
	if rec.State == "done" {
		w.Header().Set("Idempotent-Replayed", "true")
		if rec.ContentType != "" {
			w.Header().Set("Content-Type", rec.ContentType)
		}
		for name, v := range rec.Headers {
			w.Header()[http.CanonicalHeaderKey(name)] = v
		}
		w.WriteHeader(rec.Status)
		switch {
		case rec.Answer != nil:
			w.Write(rec.Answer)
		case rec.Body != nil: // stored before Answer
			w.Write(rec.Body)
			w.Write([]byte("\n"))
		}
		return 0, false
	}
	abandoned := rec.Node != "" && rec.Node == s.o.Node && rec.Incarnation != s.incarnation
	if abandoned || time.Since(rec.Started) > inFlightTimeout {
		rev, err := s.o.Idempotency.Update(ctx, kvKey, inflight, e.Revision())
		if err == nil {
			return rev, true
		}
	}
	p := problem.New(problem.IdempotencyKeyInFlight, http.StatusConflict, "a request with this Idempotency-Key is still being processed; retry shortly")
	p.RetryAfter = 1
	problem.Write(w, p)
	return 0, false
}
