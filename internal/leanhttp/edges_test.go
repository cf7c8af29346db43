package leanhttp

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// leanOnly starts a lean server with h (net/http serving h as its fallback) and returns its
// address; cleanup shuts it down without insisting on a clean result.
func leanOnly(t *testing.T, h http.Handler, tune func(*Server)) (string, *Server) {
	return leanWithFallback(t, h, nil, tune)
}

// leanWithFallback is leanOnly with another handler for the fallback (nil: h).
func leanWithFallback(t *testing.T, h, fallback http.Handler, tune func(*Server)) (string, *Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if fallback == nil {
		fallback = h
	}
	s := &Server{Handler: h, Fallback: &http.Server{Handler: fallback}}
	if tune != nil {
		tune(s)
	}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		s.Fallback.Close()
	})
	return ln.Addr().String(), s
}

// sendRaw writes raw on a new connection to addr and returns the reader of its answers.
func sendRaw(t *testing.T, addr, raw string) *bufio.Reader {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	return bufio.NewReader(c)
}

func stdOnly(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	return ln.Addr().String()
}

// A handler that sets Content-Length and then writes more bytes: the excess goes on the
// wire and is read by the client as the start of the next response (response splitting /
// desync on a kept-alive connection). net/http returns http.ErrContentLength.
func TestContentLengthOverrun(t *testing.T) {
	writeErr := make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/over" {
			w.Header().Set("Content-Length", "5")
			_, err := io.WriteString(w, "helloHTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Smuggled: yes\r\n\r\nforged")
			writeErr <- err
			return
		}
		io.WriteString(w, "second")
	})
	addr, _ := leanOnly(t, h, nil)
	r, res := pipelined(t, addr, "/over", "/second")
	io.ReadAll(res.Body)
	if err := <-writeErr; !errors.Is(err, http.ErrContentLength) {
		t.Errorf("Write past the declared Content-Length returned %v, want http.ErrContentLength", err)
	}
	res2, err := http.ReadResponse(r, nil)
	if err != nil {
		return // closed: acceptable
	}
	b, _ := io.ReadAll(res2.Body)
	if string(b) != "second" || res2.Header.Get("X-Smuggled") != "" {
		t.Errorf("the second response the client read is %q X-Smuggled=%q: the handler's excess bytes became a forged response",
			b, res2.Header.Get("X-Smuggled"))
	}
}

// pipelined sends GETs for paths on one connection at once and returns the reader of their
// answers with the first answer read.
func pipelined(t *testing.T, addr string, paths ...string) (*bufio.Reader, *http.Response) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	for _, p := range paths {
		io.WriteString(c, "GET "+p+" HTTP/1.1\r\nHost: h\r\n\r\n")
	}
	r := bufio.NewReader(c)
	res, err := http.ReadResponse(r, nil)
	if err != nil {
		t.Fatal(err)
	}
	return r, res
}

// A handler that declares more than it writes: the connection is kept alive, so the
// client takes the next response's bytes as the rest of this body. net/http closes the
// connection.
func TestContentLengthShortfall(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/short" {
			w.Header().Set("Content-Length", "40")
			io.WriteString(w, "short")
			return
		}
		io.WriteString(w, "second")
	})
	addr, _ := leanOnly(t, h, nil)
	_, res := pipelined(t, addr, "/short", "/second")
	b, err := io.ReadAll(res.Body)
	if err == nil || strings.Contains(string(b), "HTTP/1.1") {
		t.Errorf("body read as %q (err %v): the next response was taken as the rest of the short body; want the connection closed", b, err)
	}
}

// A handler that sets Transfer-Encoding: chunked itself gets both framings sent: a raw
// body with Content-Length and Transfer-Encoding: chunked. net/http chunks the body.
func TestHandlerTransferEncoding(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		io.WriteString(w, "hello")
	})
	for _, tc := range []struct{ name, addr string }{{"net/http", stdOnly(t, h)}, {"lean", func() string { a, _ := leanOnly(t, h, nil); return a }()}} {
		res, err := (&http.Client{Timeout: 3 * time.Second}).Get("http://" + tc.addr + "/")
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil || string(b) != "hello" { // lean: the client waits for a chunk terminator that never comes
			t.Errorf("%s: body %q, %v", tc.name, b, err)
		}
	}
}

// ReadHeaderTimeout does not apply to a new connection that sends nothing: the fast path
// waits for the first byte under IdleTimeout (forever when it is zero). net/http starts
// ReadHeaderTimeout at accept. A slowloris client holds connections (and goroutines) at will.
func TestSilentConnectionClosedAfterReadHeaderTimeout(t *testing.T) {
	addr, _ := leanOnly(t, http.NotFoundHandler(), func(s *Server) {
		s.ReadHeaderTimeout = 100 * time.Millisecond
		s.IdleTimeout = 0 // as net/http: no limit on keep-alive idleness
	})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
		t.Fatalf("a connection that sent nothing: %v after 3s; want it closed after ReadHeaderTimeout (100ms)", err)
	}
}

// A second Shutdown blocks forever, whatever its context: it waits on s.fallback, which the
// first call already drained. net/http's Shutdown may be called again.
func TestShutdownTwiceReturns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: http.NotFoundHandler(), Fallback: &http.Server{Handler: http.NotFoundHandler()}}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	// wait for Serve to be accepting
	for i := 0; ; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			c.Close()
			break
		}
		if i > 100 {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	<-served
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the second Shutdown (context of 200ms) had not returned after 5s")
	}
}

// The header map is snapshotted at WriteHeader in net/http; the fast path sends whatever
// the map holds when the answer is written out, so fields set after WriteHeader leak out.
func TestHeaderChangedAfterWriteHeader(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.Header().Set("X-After", "1")
		io.WriteString(w, "ok")
	})
	for _, tc := range []struct{ name, addr string }{{"net/http", stdOnly(t, h)}, {"lean", func() string { a, _ := leanOnly(t, h, nil); return a }()}} {
		res, err := http.Get("http://" + tc.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if v := res.Header.Get("X-After"); v != "" {
			t.Errorf("%s: a field set after WriteHeader was sent (X-After=%q)", tc.name, v)
		}
	}
}

// The request context lacks net/http's ServerContextKey and LocalAddrContextKey (and the
// Fallback's BaseContext/ConnContext are not applied on the fast path).
func TestContextValues(t *testing.T) {
	type ck struct{}
	got := make(chan string, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, srv := r.Context().Value(http.ServerContextKey).(*http.Server)
		_, la := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		base, _ := r.Context().Value(ck{}).(string)
		got <- fmt.Sprintf("server=%v localaddr=%v base=%q", srv, la, base)
	})
	addr, _ := leanOnly(t, h, func(s *Server) {
		s.Fallback.BaseContext = func(net.Listener) context.Context { return context.WithValue(context.Background(), ck{}, "base") }
	})
	res, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if g := <-got; g != `server=true localaddr=true base="base"` {
		t.Errorf("request context: %s; net/http gives server=true localaddr=true and the BaseContext's values", g)
	}
}

// A connection mid-head when Shutdown starts (not idle, so Shutdown waits for it), whose
// request turns out to need net/http, is handed to a fallback that has already shut down:
// it is closed unanswered. A fast-path request in the same position is answered.
func TestHandOffDuringShutdownIsServed(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	addr, s := leanOnly(t, h, func(s *Server) { s.ReadHeaderTimeout = 10 * time.Second })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /x HTTP/1.1\r\nHost: h\r\n")
	// wait until the connection is registered and reading its head
	for i := 0; ; i++ {
		busy := false
		s.mu.Lock()
		for cn := range s.conns {
			cn.mu.Lock()
			if cn.state == reading {
				busy = true
			}
			cn.mu.Unlock()
		}
		s.mu.Unlock()
		if busy {
			break
		}
		if i > 500 {
			t.Fatal("connection never became busy")
		}
		time.Sleep(5 * time.Millisecond)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	for !s.closing.Load() {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // long enough for a fallback with nothing to serve to have shut down
	io.WriteString(c, "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("a request in progress when Shutdown began was dropped unanswered: %v", err)
	}
	res.Body.Close()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// Reading the request body from another goroutine while the handler writes the answer
// races with the fast path's discard of the unread body (net/http's body is locked).
// Run with -race.
func TestBodyReadOnAnotherGoroutine(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); io.Copy(io.Discard, r.Body) }()
		io.WriteString(w, "ok")
		w.(http.Flusher).Flush()
		wg.Wait()
	})
	addr, _ := leanOnly(t, h, nil)
	for i := 0; i < 20; i++ {
		res, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader(strings.Repeat("x", 100<<10)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// The same with net/http's client, as a real caller uploading past MaxBody sees it.
func TestEarlyAnswerToALargeUploadArrives(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})
	try := func(addr string) (ok int, errs []string) {
		for i := 0; i < 20; i++ {
			cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
			res, err := cl.Post("http://"+addr+"/", "application/octet-stream", strings.NewReader(strings.Repeat("x", 16<<20)))
			if err == nil && res.StatusCode == 413 {
				ok++
				res.Body.Close()
			} else if err != nil {
				errs = append(errs, err.Error())
			}
		}
		return
	}
	stdOK, stdErrs := try(stdOnly(t, h))
	leanAddr, _ := leanOnly(t, h, nil)
	leanOK, leanErrs := try(leanAddr)
	t.Logf("net/http: %d/20 answered %q; lean: %d/20 answered %q", stdOK, stdErrs, leanOK, leanErrs)
	if leanOK < stdOK {
		t.Errorf("lean answered %d of 20 early 413s, net/http %d", leanOK, stdOK)
	}
}

// A handler that sets Content-Encoding without a Content-Type: net/http does not sniff
// a type from encoded bytes; the fast path labels a gzip body application/x-gzip.
// Also: a handler's "Connection: keep-alive" is sent although the server then closes.
func TestNoSniffWhenEncodedAndConnectionClose(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Connection", "keep-alive")
		w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
	})
	raw := "GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
	var got []string
	for _, addr := range []string{stdOnly(t, h), func() string { a, _ := leanOnly(t, h, nil); return a }()} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, raw)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		c.Close()
		got = append(got, fmt.Sprintf("Content-Type=%q Connection=%q", res.Header.Get("Content-Type"), res.Header.Get("Connection")))
	}
	if got[0] != got[1] {
		t.Errorf("net/http sent %s; lean sent %s", got[0], got[1])
	}
}
