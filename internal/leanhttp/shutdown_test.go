package leanhttp

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A connection handed to net/http and hijacked there (an Upgrade) is never closed by
// net/http: Shutdown does not wait for it (it waited until ctx ended), as net/http's own
// Shutdown neither closes nor waits for hijacked connections.
func TestShutdownWithAHijackedHandedConnection(t *testing.T) {
	hijacked := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	fb := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		brw.Flush()
		close(hijacked)
		<-release // a long-lived upgraded connection
		c.Close()
	})
	addr, s := leanWithFallback(t, http.NotFoundHandler(), fb, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
	<-hijacked
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a hijacked connection open: %v after %v (net/http: nil at once)", err, time.Since(start))
	}
}

// A kept-alive connection whose caller has sent part of its next request's head and stalls:
// net/http counts it idle (StateActive comes only once the head is read) and closes it at
// once in Shutdown, and so does the fast path (it waited for ReadHeaderTimeout, past
// Shutdown's ctx).
func TestShutdownClosesAPartialNextHead(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, lean := range []bool{false, true} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var shutdown func(context.Context) error
		if lean {
			s := &Server{Handler: h, Fallback: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
			go s.Serve(ln)
			shutdown = s.Shutdown
		} else {
			s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
			go s.Serve(ln)
			shutdown = s.Shutdown
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: h\r\n") // and stalls
		time.Sleep(100 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		start := time.Now()
		err = shutdown(ctx)
		cancel()
		c.Close()
		t.Logf("lean=%v: Shutdown %v after %v", lean, err, time.Since(start).Round(time.Millisecond))
		if err != nil {
			t.Errorf("lean=%v: Shutdown: %v", lean, err)
		}
	}
}

// A new connection that sends part of a head and stalls: net/http's Shutdown closes a
// StateNew connection older than 5 s, and so does the fast path, with allot's settings
// (ReadHeaderTimeout 10 s on both servers), whether it holds the connection (an HTTP/1.1
// head) or has handed it over (an HTTP/1.0 request line); it waited past an 8 s ctx.
func TestShutdownWithAStalledNewConnection(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	for _, tc := range []struct{ name, sent string }{
		{"net/http", "GET / HTTP/1.1\r\nHost: h\r\n"},
		{"lean-held", "GET / HTTP/1.1\r\nHost: h\r\n"},
		{"handed", "GET / HTTP/1.0\r\nHost: h\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var shutdown func(context.Context) error
			if tc.name != "net/http" {
				s := &Server{Handler: h, Fallback: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}, ReadHeaderTimeout: 10 * time.Second}
				go s.Serve(ln)
				shutdown = s.Shutdown
			} else {
				s := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
				go s.Serve(ln)
				shutdown = s.Shutdown
			}
			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, tc.sent) // and stalls
			time.Sleep(100 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
			defer cancel()
			start := time.Now()
			err = shutdown(ctx)
			t.Logf("Shutdown %v after %v", err, time.Since(start).Round(time.Millisecond))
			if err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}
