package leanhttp

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// maxDiscard is how much of a body its handler left unread is read past to keep the
// connection (net/http's figure); with more left, the connection is closed instead.
const maxDiscard = 256 << 10

// streamAt is how much of an answer is buffered before it is sent chunked: below it, an
// answer goes out with its Content-Length in one write.
const streamAt = 64 << 10

// sniffLen is how much of a body http.DetectContentType looks at.
const sniffLen = 512

// serveRequest serves the request whose head is buffered and says whether to keep the
// connection for another; linger means the connection is closed with request bytes unread
// (see closeWriteAndWait).
func (c *conn) serveRequest(h head, u *url.URL) (keep, linger bool) {
	c.r.Discard(h.size)
	hdr := make(http.Header, len(h.fields))
	for _, f := range h.fields {
		hdr[f.name] = append(hdr[f.name], f.value)
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req := (&http.Request{
		Method:     h.method,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Host:       h.host,
		RequestURI: h.target,
		RemoteAddr: c.remote,
		Close:      h.close,
	}).WithContext(ctx)
	var b *body
	if h.contentLength > 0 {
		b = &body{r: c.r, left: h.contentLength}
		req.Body, req.ContentLength = b, h.contentLength
	} else {
		req.Body = http.NoBody
	}
	w := &response{c: c, req: req, reqBody: b, header: make(http.Header, 4), head: h.method == http.MethodHead,
		body: c.body[:0], fields: c.fields[:0], declared: -1}
	if !c.run(w, req) {
		return false, false
	}
	w.finish()
	if cap(w.body) <= streamAt {
		c.body = w.body[:0]
	}
	if cap(w.fields) <= 4096 {
		c.fields = w.fields[:0]
	}
	if b != nil {
		b.mu.Lock()
		b.ended = true // the handler has returned: its body is closed to late readers
		b.mu.Unlock()
	}
	if w.err != nil || w.close || h.close || c.s.closing.Load() {
		return false, w.unread
	}
	return true, false
}

// run calls the handler; false if it panicked (the connection is then closed unanswered, as
// net/http does).
func (c *conn) run(w *response, req *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			if v != http.ErrAbortHandler {
				c.s.logPanic(v, c.remote)
			}
			ok = false
		}
	}()
	c.s.Handler.ServeHTTP(w, req)
	return true
}

// body is a request body of known length read from the connection's buffer. Its lock lets
// a handler read it on another goroutine while the answer (which may skip what is left) is
// written, as net/http's body does.
type body struct {
	mu     sync.Mutex
	r      *bufio.Reader
	left   int64
	closed bool // closed by the handler
	ended  bool // the handler returned
}

func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.ended {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.r.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if err == nil && b.left == 0 {
		err = io.EOF
	}
	return n, err
}

func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

// skip reads past what is left, before the answer goes out, as net/http does; false means
// the connection cannot be kept: too much was left, the handler closed the body before its
// end, or the caller stopped sending.
func (b *body) skip() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return true
	}
	if b.closed || b.left >= maxDiscard {
		return false
	}
	n := int(b.left)
	b.left = 0
	_, err := b.r.Discard(n)
	return err == nil
}

// response is the http.ResponseWriter of a fast-path request. It buffers the answer so that
// head and body leave in one write with a Content-Length; past streamAt bytes, or when
// flushed, it sends the head and streams the rest chunked.
type response struct {
	c       *conn
	req     *http.Request
	reqBody *body // nil without a body
	header  http.Header
	head    bool // a HEAD request: the body is counted, not sent

	// Set by WriteHeader from the header as it then was (net/http snapshots it there too):
	status     int
	fields     []byte // the handler's fields, formatted; Content-Length, Transfer-Encoding and Connection apart
	declared   int64  // the handler's valid Content-Length, -1 for none
	chunk      bool   // the handler asked for chunked transfer coding
	hasType    bool   // Content-Type given (or Content-Encoding, which rules out sniffing)
	hasDate    bool
	connection string // the handler's Connection value

	body    []byte // body buffered, before the head is sent
	sent    bool   // the head has been written
	chunked bool   // streaming with chunked transfer coding
	written int64  // body bytes the handler wrote in all
	close   bool   // close the connection after this answer
	unread  bool   // closing with request body bytes unread
	err     error  // a write to the connection failed
}

func (w *response) Header() http.Header { return w.header }

func (w *response) WriteHeader(code int) {
	if w.status != 0 {
		return // superfluous, as net/http ignores it
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code <= 199 && code != http.StatusSwitchingProtocols {
		// An informational answer goes out at once and the handler answers again.
		b := appendStatusLine(nil, code)
		b = appendHeader(b, w.header, lengthFields)
		w.write(append(b, "\r\n"...))
		return
	}
	w.status = code
	h := w.header
	if v := h["Content-Length"]; len(v) > 0 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 && isDigits([]byte(v[0])) {
			w.declared = n
		}
	}
	te := h.Get("Transfer-Encoding")
	if te == "chunked" {
		w.chunk = true
	}
	if v := h["Connection"]; len(v) > 0 {
		w.connection = v[0]
	}
	_, w.hasDate = h["Date"]
	_, ct := h["Content-Type"]
	// As net/http: no type is guessed for an encoded body, nor one the handler frames itself.
	w.hasType = ct || h.Get("Content-Encoding") != "" || te != ""
	skip := framingFields
	if code == http.StatusNotModified {
		skip = notModifiedFields // as net/http: a 304 describes no body of its own
	}
	w.fields = appendHeader(w.fields, h, skip)
}

// framingFields are the handler's fields the writer sets itself.
var framingFields = []string{"Connection", "Content-Length", "Transfer-Encoding"}

// lengthFields are left out of a 1xx, which has no body (RFC 9110).
var lengthFields = []string{"Content-Length", "Transfer-Encoding"}

// notModifiedFields are left out of a 304.
var notModifiedFields = []string{"Connection", "Content-Length", "Transfer-Encoding", "Content-Type"}

func (w *response) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.declared >= 0 && w.written+int64(len(p)) > w.declared {
		return 0, http.ErrContentLength // past the length the handler declared: never sent
	}
	w.written += int64(len(p))
	if w.head { // counted for the Content-Length; the start kept to sniff a Content-Type from
		if n := min(len(p), sniffLen-len(w.body)); n > 0 {
			w.body = append(w.body, p[:n]...)
		}
		return len(p), nil
	}
	if !w.sent && !w.chunk && len(w.body)+len(p) <= streamAt {
		w.body = append(w.body, p...)
		return len(p), nil
	}
	w.stream(p)
	if w.err != nil {
		return 0, w.err
	}
	return len(p), nil
}

// Flush sends the head and what is buffered; the rest of the body streams.
func (w *response) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.stream(nil)
}

// stream writes the head if not yet sent, then what is buffered and p: chunked unless the
// handler declared a Content-Length.
func (w *response) stream(p []byte) {
	var out []byte
	if !w.sent {
		sniff := w.body
		if len(sniff) == 0 {
			sniff = p
		}
		w.chunked = w.declared < 0 && bodyAllowed(w.status) && !w.head
		out = w.appendHead(w.c.takeOut(len(w.body)+len(p)+len(w.fields)+256), w.declared, sniff)
		w.sent = true
		if !w.head { // a HEAD's buffer is only the start kept for sniffing
			out = w.appendChunk(out, w.body)
		}
		w.body = w.body[:0]
	} else {
		out = w.c.takeOut(len(p) + 32)
	}
	if !w.head {
		out = w.appendChunk(out, p)
	}
	w.write(out)
	w.c.putOut(out)
}

func (w *response) appendChunk(b, p []byte) []byte {
	if len(p) == 0 {
		return b
	}
	if !w.chunked {
		return append(b, p...)
	}
	b = strconv.AppendInt(b, int64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	return append(b, "\r\n"...)
}

func (w *response) write(b []byte) {
	if w.err != nil || len(b) == 0 {
		return
	}
	if _, err := w.c.rwc.Write(b); err != nil {
		w.err = err
	}
}

// finish sends the answer: whole, with its Content-Length, when it was buffered; else the
// end of the chunked stream.
func (w *response) finish() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.chunk && !w.sent && !w.head && bodyAllowed(w.status) {
		w.stream(nil) // the handler asked for chunks
	}
	if w.declared >= 0 && w.written != w.declared && !w.head && bodyAllowed(w.status) {
		w.close = true // short of its declared length: the caller cannot find the next answer
	}
	if w.sent {
		if w.chunked {
			w.write([]byte("0\r\n\r\n"))
		}
		return
	}
	length := w.declared
	if w.head && w.chunk {
		length = -1 // as net/http: a HEAD the handler framed as chunked declares no length
	}
	if length < 0 && !(w.head && w.chunk) {
		length = int64(len(w.body))
		if w.head {
			length = w.written
			if length == 0 {
				length = -1 // a HEAD handler that wrote nothing: no length, as net/http
			}
		}
	}
	out := w.appendHead(w.c.takeOut(len(w.body)+len(w.fields)+256), length, w.body)
	if !w.head && bodyAllowed(w.status) {
		out = append(out, w.body...)
	}
	w.write(out)
	w.c.putOut(out)
}

// appendHead appends the status line and header fields. length is the body's length to
// declare (-1: none); sniff is the start of the body, to guess a missing Content-Type from.
func (w *response) appendHead(b []byte, length int64, sniff []byte) []byte {
	if w.req.Close || w.c.s.closing.Load() || asciiEqualFold([]byte(w.connection), "close") {
		w.close = true
	}
	if w.reqBody != nil && !w.reqBody.skip() {
		w.close, w.unread = true, true
	}
	b = appendStatusLine(b, w.status)
	b = append(b, w.fields...)
	if !w.hasDate {
		b = append(b, "Date: "...)
		b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
		b = append(b, "\r\n"...)
	}
	if bodyAllowed(w.status) {
		if !w.hasType && len(sniff) > 0 {
			b = append(b, "Content-Type: "...)
			b = append(b, http.DetectContentType(sniff)...)
			b = append(b, "\r\n"...)
		}
		switch {
		case w.chunked:
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		case length >= 0:
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, length, 10)
			b = append(b, "\r\n"...)
		}
	}
	switch {
	case w.close:
		b = append(b, "Connection: close\r\n"...)
	case w.connection != "" && isFieldValue([]byte(w.connection)):
		b = append(b, "Connection: "...)
		b = append(b, w.connection...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// takeOut returns an empty buffer of at least n bytes: the connection's own when it is big
// enough.
func (c *conn) takeOut(n int) []byte {
	if cap(c.out) >= n {
		b := c.out[:0]
		c.out = nil
		return b
	}
	return make([]byte, 0, max(n, 1024))
}

// putOut keeps b as the connection's buffer unless it grew large.
func (c *conn) putOut(b []byte) {
	if cap(b) <= streamAt+4096 {
		c.out = b[:0]
	}
}

func bodyAllowed(status int) bool {
	return !(status >= 100 && status <= 199) && status != http.StatusNoContent && status != http.StatusNotModified
}

func appendStatusLine(b []byte, code int) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	b = append(b, text...)
	return append(b, "\r\n"...)
}

// appendHeader writes h's fields sorted by name, but those named in skip, leaving out
// invalid names and turning line breaks in values into spaces, as net/http does.
func appendHeader(b []byte, h http.Header, skip []string) []byte {
	var small [16]string
	keys := small[:0]
	for k := range h {
		if !slices.Contains(skip, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !isToken([]byte(k)) {
			continue
		}
		for _, v := range h[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			start := len(b)
			b = append(b, trimOWS([]byte(v))...)
			for i := start; i < len(b); i++ {
				if b[i] == '\r' || b[i] == '\n' {
					b[i] = ' '
				}
			}
			b = append(b, "\r\n"...)
		}
	}
	return b
}

var _ http.Flusher = (*response)(nil)
