package leanhttp

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A HEAD handler that writes and then flushes: the bytes kept to sniff a Content-Type from
// must not follow the head as if they were a body (a kept-alive client read them as the
// start of the next answer).
func TestHeadFlushSendsNoBody(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
		w.(http.Flusher).Flush()
	})
	addr, _ := leanWithFallback(t, h, nil, nil)
	br := sendRaw(t, addr, "HEAD / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n")
	res, err := http.ReadResponse(br, &http.Request{Method: "HEAD"})
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	res2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("answer after a flushed HEAD answer: %v (the HEAD answer carried body bytes)", err)
	}
	b, _ := io.ReadAll(res2.Body)
	if res2.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("second answer %d %q", res2.StatusCode, b)
	}
}

// An informational answer leaves out the handler's Content-Length and Transfer-Encoding:
// RFC 9110 forbids Content-Length in a 1xx, and net/http leaves both out
// (excludedHeadersNoBody).
func TestInformationalOmitsFraming(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.Header().Set("Content-Length", "5")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "hello")
	})
	addr, _ := leanWithFallback(t, h, nil, nil)
	br := sendRaw(t, addr, "GET / HTTP/1.1\r\nHost: h\r\n\r\n")
	var early []string
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			break
		}
		early = append(early, strings.TrimSpace(line))
	}
	t.Logf("1xx head: %q", early)
	if !strings.HasPrefix(early[0], "HTTP/1.1 103") {
		t.Fatalf("first answer %q", early[0])
	}
	for _, l := range early[1:] {
		if strings.HasPrefix(strings.ToLower(l), "content-length:") || strings.HasPrefix(strings.ToLower(l), "transfer-encoding:") {
			t.Errorf("103 answer has %q", l)
		}
	}
}

// A handler that sets Transfer-Encoding: chunked gets no sniffed Content-Type, as from
// net/http (hasTE).
func TestNoSniffUnderHandlerTransferEncoding(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Transfer-Encoding", "chunked")
		io.WriteString(w, "<html><body>hi</body></html>")
	})
	addr, _ := leanWithFallback(t, h, nil, nil)
	std := stdOnly(t, h)
	get := func(a string) string {
		res, err := http.Get("http://" + a + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res.Header.Get("Content-Type")
	}
	lean, ref := get(addr), get(std)
	if lean != ref {
		t.Fatalf("Content-Type: fast path %q, net/http %q", lean, ref)
	}
}
