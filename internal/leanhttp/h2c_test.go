package leanhttp

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// A fallback that serves unencrypted HTTP/2 (prior knowledge, which the fast path hands
// over): net/http ends such a connection through its Shutdown (GOAWAY), so Shutdown must not
// wait for the connection to close before calling it (it held Shutdown until its ctx ended).
func TestShutdownWithAnIdleH2CConnection(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	s := &Server{Handler: h, Fallback: &http.Server{Handler: h, Protocols: p}}
	go s.Serve(ln)
	defer s.Fallback.Close()
	cp := new(http.Protocols)
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: cp}
	defer tr.CloseIdleConnections()
	res, err := (&http.Client{Transport: tr}).Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	t.Logf("served as %s", b)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with an idle h2c connection: %v after %v", err, time.Since(start))
	}
}
