package leanhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// testHandler answers what the differential tests compare: the request as the handler saw
// it, and answers of every shape the fast path writes differently from net/http.
func testHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/echo/{rest...}", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		keys := make([]string, 0, len(r.Header))
		for k := range r.Header {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "method=%s uri=%s path=%s query=%s host=%s proto=%s len=%d close=%v rest=%s\n",
			r.Method, r.RequestURI, r.URL.Path, r.URL.RawQuery, r.Host, r.Proto, r.ContentLength, r.Close, r.PathValue("rest"))
		for _, k := range keys {
			fmt.Fprintf(w, "%s=%q\n", k, r.Header[k])
		}
		fmt.Fprintf(w, "body=%q\n", body)
	})
	mux.HandleFunc("/ignore-body", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored")
	})
	mux.HandleFunc("/half-body", func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 3)
		io.ReadFull(r.Body, b)
		fmt.Fprintf(w, "read %q", b)
	})
	mux.HandleFunc("/sniff", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html><body>hi</body></html>")
	})
	mux.HandleFunc("/no-content", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Kind", "none")
		w.WriteHeader(http.StatusNoContent)
		if _, err := w.Write([]byte("x")); !errors.Is(err, http.ErrBodyNotAllowed) {
			panic("a 204 took a body")
		}
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		for i := 0; i < 100; i++ {
			w.Write(bytes.Repeat([]byte{byte('a' + i%26)}, 1500))
		}
	})
	mux.HandleFunc("/flushed", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "first ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "second")
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Injected", "a\r\nSet-Cookie: evil=1")
		w.Header()["Bad Name"] = []string{"x"}
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.WriteHeader(http.StatusTeapot)
		w.WriteHeader(http.StatusOK) // superfluous: ignored
		io.WriteString(w, "short and stout")
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		panic("handler failed")
	})
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "exact")
	})
	return mux
}

// servers starts the handler behind a lean server and behind a plain net/http server.
func servers(t *testing.T, h http.Handler, tune func(*Server)) (lean, std string, s *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s = &Server{Handler: h, Fallback: &http.Server{Handler: h}}
	if tune != nil {
		tune(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	stdLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	std0 := &http.Server{Handler: h}
	go std0.Serve(stdLn)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		std0.Close()
	})
	return ln.Addr().String(), stdLn.Addr().String(), s
}

// exchange writes raw on one connection, then reads every response until the server closes
// the connection or stops answering, and returns them normalized for comparison.
func exchange(t *testing.T, addr, raw string, methods []string) []string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return []string{"dial: " + err.Error()}
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		return []string{"write: " + err.Error()}
	}
	r := bufio.NewReader(c)
	var out []string
	for i := 0; ; i++ {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		method := "GET"
		if i < len(methods) {
			method = methods[i]
		}
		res, err := http.ReadResponse(r, &http.Request{Method: method})
		if err != nil {
			if len(out) == 0 || !(errors.Is(err, io.EOF) || isTimeout(err)) {
				out = append(out, "error: "+errClass(err))
			}
			if errors.Is(err, io.EOF) {
				out = append(out, "closed")
			}
			return out
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return append(out, "reading a body: "+err.Error())
		}
		res.Header.Del("Date")
		res.Header.Del("Content-Length")
		res.Header.Del("Transfer-Encoding")
		out = append(out, fmt.Sprintf("%s %v close=%v\n%s", res.Status, sortedHeader(res.Header), res.Close, body))
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func errClass(err error) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	}
	return "other"
}

func sortedHeader(h http.Header) string {
	var b strings.Builder
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q;", k, h[k])
	}
	return b.String()
}

// TestSameAnswersAsNetHTTP sends the same bytes to the lean server and to net/http and wants
// the same answers: status, headers (but Date and the framing), body, and whether the
// connection stays open. The cases cover the fast path and each way out of it.
func TestSameAnswersAsNetHTTP(t *testing.T) {
	lean, std, _ := servers(t, testHandler(), nil)
	cases := []struct {
		name    string
		raw     string
		methods []string
	}{
		{"get", "GET /echo/a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\nX-Api-Key: k\r\nX-Api-Key: k2\r\n\r\n", nil},
		{"post with a body then another on the same connection",
			"POST /echo/p HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"b c\"}" +
				"GET /echo/second HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"body ignored by the handler, then the next request", "POST /ignore-body HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello" +
			"GET /echo/after HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"body half read", "POST /half-body HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabcdef" +
			"GET /echo/after HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"odd but valid whitespace and names", "GET /echo/ws HTTP/1.1\r\nHost: h:8080\r\nx-lower-case:\t  v  \r\nX-Empty:\r\nweird!#$%&'*+-.^_`|~name: 1\r\n\r\n", nil},
		{"head", "HEAD /sniff HTTP/1.1\r\nHost: h\r\n\r\n", []string{"HEAD"}},
		{"sniffed content type", "GET /sniff HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"no content", "GET /no-content HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"big answer", "GET /big HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"flushed answer", "GET /flushed HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"status, sanitized and dropped headers", "GET /status HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"explicit content length", "GET /length HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"caller says close", "GET /echo/c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /echo/never HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"handler says close", "GET /close HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/never HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"not found", "GET /nowhere HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"keep-alive", "GET /echo/k HTTP/1.1\r\nHost: h\r\nConnection: Keep-Alive\r\n\r\n", nil},
		// Out of the fast path: net/http serves these connections from the first odd request.
		{"chunked upload", "POST /echo/chunked HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nGET /echo/after HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"expect continue", "POST /echo/e HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", nil},
		{"http/1.0", "GET /echo/old HTTP/1.0\r\n\r\n", nil},
		{"http/1.0 keep-alive", "GET /echo/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /echo/again HTTP/1.0\r\n\r\n", nil},
		{"after a fast request, an odd one", "GET /echo/fast HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/old HTTP/1.0\r\n\r\n", nil},
		{"missing host", "GET /echo/x HTTP/1.1\r\n\r\n", nil},
		{"two hosts", "GET /echo/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", nil},
		{"bad host", "GET /echo/x HTTP/1.1\r\nHost: a b\r\n\r\n", nil},
		{"two lengths", "POST /echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", nil},
		{"bad length", "POST /echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", nil},
		{"length and chunked", "POST /echo/x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", nil},
		{"space before colon", "GET /echo/x HTTP/1.1\r\nHost: h\r\nX-Bad : v\r\n\r\n", nil},
		{"folded line", "GET /echo/x HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  2\r\n\r\n", nil},
		{"bare LF", "GET /echo/x HTTP/1.1\nHost: h\n\n", nil},
		{"obs-text value", "GET /echo/x HTTP/1.1\r\nHost: h\r\nX-Latin: caf\xe9\r\n\r\n", nil},
		{"control character", "GET /echo/x HTTP/1.1\r\nHost: h\r\nX-Ctl: a\x01b\r\n\r\n", nil},
		{"absolute form", "GET http://h/echo/abs HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"lower-case method", "get /echo/x HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"bad percent escape", "GET /echo/%zz HTTP/1.1\r\nHost: h\r\n\r\n", nil},
		{"connection upgrade", "GET /echo/x HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", nil},
		{"h2c preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", nil},
		{"huge header", "GET /echo/x HTTP/1.1\r\nHost: h\r\nX-Big: " + strings.Repeat("b", 20000) + "\r\n\r\n", nil},
		{"garbage", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", nil},
	}
	// Every exchange ends by waiting for its connection to go quiet: run them all at once.
	type answers struct{ lean, std []string }
	got := make([]answers, len(cases))
	var wg sync.WaitGroup
	for i, tc := range cases {
		wg.Add(2)
		go func() { defer wg.Done(); got[i].std = exchange(t, std, tc.raw, tc.methods) }()
		go func() { defer wg.Done(); got[i].lean = exchange(t, lean, tc.raw, tc.methods) }()
	}
	wg.Wait()
	for i, tc := range cases {
		if !slices.Equal(got[i].lean, got[i].std) {
			t.Errorf("%s: the lean server answered\n%s\nnet/http answered\n%s", tc.name, strings.Join(got[i].lean, "\n---\n"), strings.Join(got[i].std, "\n---\n"))
		}
	}
}

// TestFastPathTakesThePlainRequests checks that the plain requests are served by the fast
// path (so the differential test compares it, not the fallback with itself), and that the
// odd ones are handed over.
func TestFastPathTakesThePlainRequests(t *testing.T) {
	var fast, slow atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(*response); ok {
			fast.Add(1)
		} else {
			slow.Add(1)
		}
		io.Copy(io.Discard, r.Body)
	})
	lean, _, _ := servers(t, h, nil)
	exchange(t, lean, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nPOST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nokGET /c HTTP/1.1\r\nHost: h\r\n\r\n", nil)
	if fast.Load() != 3 || slow.Load() != 0 {
		t.Fatalf("fast path served %d and net/http %d of 3 plain requests", fast.Load(), slow.Load())
	}
	exchange(t, lean, "GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n", nil)
	if fast.Load() != 4 || slow.Load() != 2 {
		t.Fatalf("after a request net/http must take, the fast path served %d (want 4) and net/http %d (want 2)", fast.Load(), slow.Load())
	}
}

func TestPanicClosesOnlyItsConnection(t *testing.T) {
	lean, _, _ := servers(t, testHandler(), nil)
	got := exchange(t, lean, "GET /panic HTTP/1.1\r\nHost: h\r\n\r\nGET /echo/x HTTP/1.1\r\nHost: h\r\n\r\n", nil)
	if !slices.Equal(got, []string{"error: eof"}) {
		t.Fatalf("a panicking handler's connection answered %q, want it closed unanswered", got)
	}
	if got := exchange(t, lean, "GET /sniff HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", nil); len(got) != 2 || !strings.HasPrefix(got[0], "200 OK") {
		t.Fatalf("after a panic the server answered %q", got)
	}
}

// TestLargeUnreadBodyClosesTheConnection: a body its handler left unread beyond what is
// worth reading past closes the connection after the answer, as net/http does.
func TestLargeUnreadBodyClosesTheConnection(t *testing.T) {
	lean, _, _ := servers(t, testHandler(), nil)
	c, err := net.Dial("tcp", lean)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	go fmt.Fprintf(c, "POST /ignore-body HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n\r\n%s", 1<<20, strings.Repeat("x", 1<<20))
	r := bufio.NewReader(c)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if string(b) != "ignored" || !res.Close {
		t.Fatalf("answered %q close=%v, want 'ignored' and Connection: close", b, res.Close)
	}
}

func TestTimeouts(t *testing.T) {
	lean, _, _ := servers(t, testHandler(), func(s *Server) {
		s.ReadHeaderTimeout = 200 * time.Millisecond
		s.IdleTimeout = 300 * time.Millisecond
	})
	// A head that never ends is cut off after ReadHeaderTimeout.
	c, err := net.Dial("tcp", lean)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /echo/x HTTP/1.1\r\nHost: h\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a stalled head: read %d bytes, %v; want the connection closed", n, err)
	}
	// An idle kept-alive connection is closed after IdleTimeout.
	c2, err := net.Dial("tcp", lean)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET /sniff HTTP/1.1\r\nHost: h\r\n\r\n")
	r := bufio.NewReader(c2)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("an idle connection: %v, want it closed", err)
	}
}

// TestShutdownFinishesInFlightRequests: Shutdown waits for a request being served, closes
// idle connections of both the fast path and the fallback, and Serve returns.
func TestShutdownFinishesInFlightRequests(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, Fallback: &http.Server{Handler: h}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	addr := ln.Addr().String()
	idle, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	io.WriteString(idle, "GET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
	idleR := bufio.NewReader(idle)
	if res, err := http.ReadResponse(idleR, nil); err != nil {
		t.Fatal(err)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	old, err := net.Dial("tcp", addr) // an idle connection net/http serves
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	io.WriteString(old, "GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	oldR := bufio.NewReader(old)
	if res, err := http.ReadResponse(oldR, nil); err != nil || res.Close {
		t.Fatalf("HTTP/1.0 keep-alive: %v close=%v", err, res != nil && res.Close)
	} else {
		io.Copy(io.Discard, res.Body)
	}
	busy, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	for _, r := range []*bufio.Reader{idleR, oldR} {
		if _, err := r.ReadByte(); !errors.Is(err, io.EOF) {
			t.Fatalf("an idle connection stayed open through Shutdown: %v", err)
		}
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) while a request was in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	res, err := http.ReadResponse(bufio.NewReader(busy), nil)
	if err != nil {
		t.Fatalf("the request in flight was not answered: %v", err)
	}
	if b, _ := io.ReadAll(res.Body); string(b) != "done" || !res.Close {
		t.Fatalf("in-flight answer %q close=%v, want 'done' with Connection: close", b, res.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// TestReverseProxyClient: a real client (net/http's, through httputil's dump of what it
// sent) is served on the fast path with the body intact.
func TestNetHTTPClient(t *testing.T) {
	lean, _, _ := servers(t, testHandler(), nil)
	c := &http.Client{}
	for i := 0; i < 3; i++ {
		req, _ := http.NewRequest("POST", "http://"+lean+"/echo/client?i="+fmt.Sprint(i), strings.NewReader(`{"n":1}`))
		req.Header.Set("Idempotency-Key", "k")
		dump, _ := httputil.DumpRequestOut(req, false)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if !strings.Contains(string(b), `body="{\"n\":1}"`) || !strings.Contains(string(b), `Idempotency-Key=["k"]`) {
			t.Fatalf("request\n%s\nanswered\n%s", dump, b)
		}
	}
}
