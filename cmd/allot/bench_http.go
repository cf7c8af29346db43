package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// rawHTTP is the load generator's HTTP/1.1 keep-alive client for the latency figures. The
// generator shares the machine's cores with the server it measures; net/http's client spends
// two goroutines per connection and several channel hand-offs per request, CPU the server
// then lacks, which shows up in the server's tail latency. This client writes a request and
// reads the response on the calling goroutine. Every figure and its baseline use it alike.
type rawHTTP struct {
	addr  string // host:port
	auth  string // Authorization header value
	conns chan *rawConn
}

type rawConn struct {
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// newRawHTTP returns a client for the server at base (http://host:port).
func newRawHTTP(base, auth string, maxIdle int) (*rawHTTP, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("rawHTTP speaks plain http, not %q", u.Scheme)
	}
	return &rawHTTP{addr: u.Host, auth: auth, conns: make(chan *rawConn, maxIdle)}, nil
}

func (h *rawHTTP) conn() (*rawConn, error) {
	select {
	case c := <-h.conns:
		return c, nil
	default:
	}
	c, err := net.Dial("tcp", h.addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, r: bufio.NewReaderSize(c, 16<<10), buf: make([]byte, 0, 512)}, nil
}

func (h *rawHTTP) put(c *rawConn) {
	select {
	case h.conns <- c:
	default:
		c.c.Close()
	}
}

// close closes the idle connections.
func (h *rawHTTP) close() {
	for {
		select {
		case c := <-h.conns:
			c.c.Close()
		default:
			return
		}
	}
}

// do sends one request and reads the whole response, which must have status want.
func (h *rawHTTP) do(method, path string, body []byte, want int) error {
	c, err := h.conn()
	if err != nil {
		return err
	}
	status, keep, err := c.roundTrip(h, method, path, body)
	if err != nil || !keep {
		c.c.Close()
	} else {
		h.put(c)
	}
	if err != nil {
		return err
	}
	if status != want {
		return fmt.Errorf("%s %s answered %d, want %d", method, path, status, want)
	}
	return nil
}

func (c *rawConn) roundTrip(h *rawHTTP, method, path string, body []byte) (status int, keep bool, err error) {
	b := c.buf[:0]
	b = append(b, method...)
	b = append(b, ' ')
	b = append(b, path...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, h.addr...)
	if h.auth != "" {
		b = append(b, "\r\nAuthorization: "...)
		b = append(b, h.auth...)
	}
	if body != nil {
		b = append(b, "\r\nContent-Type: application/json\r\nContent-Length: "...)
		b = strconv.AppendInt(b, int64(len(body)), 10)
	}
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.buf = b
	if _, err := c.c.Write(b); err != nil {
		return 0, false, err
	}
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, fmt.Errorf("malformed status line %q", line)
	}
	length, keep := -1, true
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return 0, false, err
		}
		if len(line) <= 2 {
			break
		}
		name, value, ok := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(":"))
		if !ok {
			return 0, false, fmt.Errorf("malformed header %q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil {
				return 0, false, fmt.Errorf("malformed Content-Length %q", value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false, errors.New("rawHTTP does not read chunked responses")
		case bytes.EqualFold(name, []byte("Connection")) && bytes.EqualFold(value, []byte("close")):
			keep = false
		}
	}
	if length < 0 {
		return 0, false, errors.New("response without Content-Length")
	}
	if _, err := c.r.Discard(length); err != nil {
		return 0, false, err
	}
	return status, keep, nil
}
