package leanhttp

import (
	"bytes"
	"net/textproto"
)

// head is a request head the fast path takes: the fields net/http would give the handler.
type head struct {
	size          int // bytes of the head, its final CRLF included
	method        string
	target        string
	host          string
	contentLength int64 // -1: none given
	close         bool  // Connection: close
	fields        []field
}

type field struct{ name, value string }

// maxFields bounds the header lines of a fast-path request.
const maxFields = 100

// headEnd returns the length of the head at the start of buf, through its blank line, or -1
// while it is not all there. odd reports a line ended by a bare LF, which the fast path
// leaves to net/http (it would otherwise wait for a CRLF CRLF that never comes).
func headEnd(buf []byte) (end int, odd bool) {
	for i := 0; i < len(buf); i++ {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return -1, false
		}
		i += j
		if i == 0 || buf[i-1] != '\r' {
			return -1, true
		}
		if i >= 3 && buf[i-2] == '\n' && buf[i-3] == '\r' {
			return i + 1, false
		}
	}
	return -1, false
}

// notHTTP11 reports, from the first bytes of a request, that it cannot be an HTTP/1.1 request
// the fast path takes, so there is no need to wait for the rest of its head.
func notHTTP11(buf []byte) bool {
	line, _, full := bytes.Cut(buf, []byte("\r\n"))
	return full && !bytes.HasSuffix(line, []byte(" HTTP/1.1"))
}

// parseHead parses buf, a whole head, or says it is not in the fast path's form (ok false).
// Anything it is not sure of is not in the form: net/http then answers it.
func parseHead(buf []byte) (h head, ok bool) {
	h.size = len(buf)
	h.contentLength = -1
	line, rest, _ := bytes.Cut(buf, []byte("\r\n"))
	method, line, ok1 := bytes.Cut(line, []byte(" "))
	target, version, ok2 := bytes.Cut(line, []byte(" "))
	if !ok1 || !ok2 || string(version) != "HTTP/1.1" || !isMethod(method) || !isOriginForm(target) {
		return head{}, false
	}
	h.method, h.target = methodString(method), string(target)
	rest = rest[:len(rest)-2] // the blank line's CRLF
	hosts := 0
	for len(rest) > 0 {
		var hl []byte
		hl, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, found := bytes.Cut(hl, []byte(":"))
		if !found || !isToken(name) || len(h.fields) == maxFields {
			return head{}, false
		}
		value = trimOWS(value)
		if !isFieldValue(value) {
			return head{}, false
		}
		key := canonicalKey(name)
		switch key {
		case "Host":
			hosts++
			if hosts > 1 || !isHost(value) {
				return head{}, false
			}
			h.host = string(value)
			continue // net/http moves Host out of the header map
		case "Content-Length":
			if h.contentLength >= 0 || !isDigits(value) {
				return head{}, false
			}
			var n int64
			for _, d := range value {
				n = n*10 + int64(d-'0')
			}
			h.contentLength = n
		case "Connection":
			switch {
			case asciiEqualFold(value, "close"):
				h.close = true
			case asciiEqualFold(value, "keep-alive"):
			default:
				return head{}, false
			}
		case "Transfer-Encoding", "Expect", "Upgrade", "Http2-Settings", "Te", "Trailer":
			return head{}, false
		}
		h.fields = append(h.fields, field{key, valueString(value)})
	}
	if hosts != 1 {
		return head{}, false
	}
	return h, true
}

func isMethod(b []byte) bool {
	if len(b) == 0 || len(b) > 16 {
		return false
	}
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}

// methodString returns the common methods without allocating.
func methodString(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "HEAD":
		return "HEAD"
	case "PATCH":
		return "PATCH"
	}
	return string(b)
}

// isOriginForm: "/" followed by visible ASCII other than '#'; url.ParseRequestURI still has
// the last word.
func isOriginForm(b []byte) bool {
	if len(b) == 0 || b[0] != '/' {
		return false
	}
	for _, c := range b {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// tchar per RFC 9110 5.6.2.
var tchar = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tchar[c] {
			return false
		}
	}
	return true
}

// isFieldValue: visible ASCII, spaces and tabs only (no obs-text, no controls).
func isFieldValue(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c >= 0x7f {
			return false
		}
	}
	return true
}

// isHost accepts a reg-name or IPv4 or bracketed IPv6 with an optional port, in the
// characters net/http's own check allows for them.
func isHost(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

func isDigits(b []byte) bool {
	if len(b) == 0 || len(b) > 18 {
		return false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// commonKeys are header names returned without allocating, by their lower-case form.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Host", "Authorization", "Content-Type", "Content-Length", "Connection", "Accept",
		"Accept-Encoding", "User-Agent", "Idempotency-Key", "X-Api-Key", "Transfer-Encoding", "Expect", "Upgrade",
		"Http2-Settings", "Te", "Trailer", "Traceparent", "Tracestate", "Cookie", "Origin", "Referer"} {
		m[lower(k)] = k
	}
	return m
}()

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// canonicalKey is textproto's canonical form of a token name.
func canonicalKey(name []byte) string {
	if len(name) <= 32 {
		var low [32]byte
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			low[i] = c
		}
		if k, ok := commonKeys[string(low[:len(name)])]; ok { // no allocation: map lookup by converted bytes
			return k
		}
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}

// valueString returns common values without allocating.
func valueString(b []byte) string {
	switch string(b) {
	case "application/json":
		return "application/json"
	case "keep-alive":
		return "keep-alive"
	case "close":
		return "close"
	case "*/*":
		return "*/*"
	}
	return string(b)
}
