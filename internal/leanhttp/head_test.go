package leanhttp

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"testing"
)

// FuzzParseHeadAgreesWithNetHTTP: whatever head the fast path takes, net/http reads the same
// request from it — method, target, host, every header field, length and Connection: close.
// What it does not take is net/http's alone, so this is the whole of the parser's contract.
func FuzzParseHeadAgreesWithNetHTTP(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /v1/entitlements/check HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nAuthorization: Bearer k\r\nContent-Type: application/json\r\nContent-Length: 52\r\n\r\n",
		"GET /a?b=c%20d HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nConnection: close\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Sp: \t v \t\r\n\r\n",
		"PUT /%7e HTTP/1.1\r\nHost: [::1]:80\r\nContent-Length: 007\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nweird!#$%&'*+-.^_`|~name: 1\r\nidempotency-key: abc\r\n\r\n",
		"GET /x HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\nAccept: */*\r\n\r\n",
		"GET /x HTTP/1.1\r\nhOsT: h_1.example\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		end, odd := headEnd(raw)
		if odd || end < 0 {
			return
		}
		h, ok := parseHead(raw[:end])
		if !ok {
			return
		}
		u, err := url.ParseRequestURI(h.target)
		if err != nil {
			return // handed to net/http too
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw[:end])))
		if err != nil {
			t.Fatalf("the fast path took %q, which net/http refuses: %v", raw[:end], err)
		}
		hdr := http.Header{}
		for _, f := range h.fields {
			hdr[f.name] = append(hdr[f.name], f.value)
		}
		cl := h.contentLength
		if cl < 0 {
			cl = 0
		}
		switch {
		case req.Method != h.method, req.RequestURI != h.target, req.Host != h.host, req.URL.String() != u.String():
			t.Fatalf("%q: net/http read %s %s host %q, the fast path %s %s host %q", raw[:end], req.Method, req.RequestURI, req.Host, h.method, h.target, h.host)
		case !maps.EqualFunc(req.Header, hdr, slices.Equal[[]string]):
			t.Fatalf("%q: net/http read the fields %q, the fast path %q", raw[:end], req.Header, hdr)
		case req.ContentLength != cl:
			t.Fatalf("%q: net/http read length %d, the fast path %d", raw[:end], req.ContentLength, cl)
		case req.Close != h.close:
			t.Fatalf("%q: net/http read close=%v, the fast path %v", raw[:end], req.Close, h.close)
		}
	})
}

func TestHeadEnd(t *testing.T) {
	for _, tc := range []struct {
		in  string
		end int
		odd bool
	}{
		{"GET / HTTP/1.1\r\nHost: h\r\n\r\nrest", 27, false},
		{"GET / HTTP/1.1\r\nHost: h\r\n", -1, false},
		{"GET / HTTP/1.1\r\nHost: h\n\r\n", -1, true},
		{"GET / HTTP/1.1\nHost: h\r\n\r\n", -1, true},
		{"\n", -1, true},
		{"\r\n\r\n", 4, false},
		{"GET / HTTP/1.1\r\nHost: h\r\n\r", -1, false},
	} {
		end, odd := headEnd([]byte(tc.in))
		if end != tc.end || odd != tc.odd {
			t.Errorf("headEnd(%q) = %d, %v; want %d, %v", tc.in, end, odd, tc.end, tc.odd)
		}
	}
}
