package ingest

import (
	"bytes"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/allot-dev/allot/api/problem"
)

// IsBinaryCloudEvent reports whether a request carries a CloudEvent in binary content mode
// (attributes in ce-* headers, the body is the data), the CloudEvents SDKs' default.
func IsBinaryCloudEvent(h http.Header) bool { return h.Get("Ce-Specversion") != "" }

// BinaryToStructured rewrites a binary-mode CloudEvent as a structured one, so one parser
// validates both. The data must be a JSON object.
func BinaryToStructured(h http.Header, body []byte) ([]byte, *problem.Problem) {
	if mt, _, err := mime.ParseMediaType(h.Get("Content-Type")); err != nil || (mt != MediaJSON && !strings.HasSuffix(mt, "+json")) {
		return nil, problem.New(problem.UnsupportedMediaType, http.StatusUnsupportedMediaType, "a binary-mode CloudEvent's data must be application/json")
	}
	ev := map[string]json.RawMessage{}
	for name, vals := range h {
		attr, ok := strings.CutPrefix(strings.ToLower(name), "ce-")
		if !ok || len(vals) == 0 {
			continue
		}
		// Senders percent-encode attribute values (space, '"', '%' and anything not printable
		// ASCII), and a receiver decodes them once (HTTP binding 1.0.2, 3.1.3.2): the subject
		// "user 42 café" arrives as user%2042%20caf%C3%A9.
		v, err := url.PathUnescape(vals[0])
		if err != nil || !utf8.ValidString(v) {
			return nil, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, attr,
				"the ce-%s header is not a percent-encoded UTF-8 value", attr)
		}
		b, _ := json.Marshal(v)
		ev[attr] = b
	}
	if b := bytes.TrimSpace(body); len(b) > 0 {
		ev["data"] = b
	}
	out, err := json.Marshal(ev)
	if err != nil {
		return nil, problem.New(problem.InvalidJSON, http.StatusBadRequest, "the data of a binary-mode CloudEvent is not valid JSON")
	}
	return out, nil
}
