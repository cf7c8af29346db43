// Package leanhttp serves the common shape of HTTP/1.1 request with a third of net/http's
// per-request CPU, and hands every connection that shows anything else to a net/http server.
//
// Why: allot's checks answer in a few microseconds, so on a small machine the HTTP server is
// most of their cost. net/http spends ~30 µs of CPU per keep-alive request on loopback, half
// of it waking threads: for every request it starts a goroutine that reads the connection in
// the background (to notice a caller that hangs up) and stops it again after the handler,
// two goroutine hand-offs that each may wake an OS thread. At 20,000 checks a second on two
// cores that was most of a core and the whole of the latency tail. This server reads a
// request, runs the handler and writes the answer on the connection's goroutine, with one
// read and one write system call per request.
//
// It is deliberately narrow. It serves a request only when every part of it is in the plain
// form below; at the first request that is not, it gives the connection — with the bytes it
// has buffered, nothing consumed — to the fallback net/http server, which serves it from then
// on with all its features and all its error answers:
//
//   - request line "METHOD /origin-form-target HTTP/1.1", method in upper-case letters;
//   - header lines "Name: value" with token names and visible-ASCII values, CRLF-terminated,
//     no obsolete line folding, at most 100 of them and the whole head within the buffer;
//   - exactly one Host, valid; at most one Content-Length, plain digits;
//   - no Transfer-Encoding, Expect, Upgrade or HTTP2-Settings, and Connection only
//     "keep-alive" or "close".
//
// So chunked uploads, 100-continue, HTTP/1.0, upgrades, h2c and malformed requests all get
// net/http's behaviour exactly. What the fast path gives up is detecting a caller's hang-up
// while its handler runs: the request's context ends when the handler returns (as with
// net/http, Shutdown does not end it). allot's handlers are short and bounded by their own
// timeouts. Trailers are not supported.
package leanhttp

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves Handler on the connections of the listener given to Serve.
type Server struct {
	Handler http.Handler
	// Fallback serves the connections handed over; its Handler should be Handler. Serve runs
	// it and Shutdown shuts it down.
	Fallback *http.Server
	// ReadHeaderTimeout bounds reading a request's head; IdleTimeout the wait for the next
	// request on a kept-alive connection. Zero means no limit.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// Log receives handler panics; nil discards them.
	Log *slog.Logger

	mu       sync.Mutex
	ln       net.Listener
	base     context.Context // requests' contexts derive from it, with net/http's values
	conns    map[*conn]struct{}
	handoff  *handoffListener
	closing  atomic.Bool
	wg       sync.WaitGroup // connection goroutines
	handed   sync.WaitGroup // connections handed to the fallback whose first request it has not served
	shutOnce sync.Once
	leanDone chan struct{} // closed once every fast-path connection has ended, after Shutdown
	// The fallback server's Serve result, set before fallbackDone is closed.
	fallbackErr  error
	fallbackDone chan struct{}
}

// ErrServerClosed is what Serve returns after Shutdown.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on l until Shutdown (then it returns ErrServerClosed).
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.ln = l
	s.conns = map[*conn]struct{}{}
	s.handoff = newHandoffListener(l.Addr())
	s.fallbackDone = make(chan struct{})
	s.base = context.Background()
	if s.Fallback.BaseContext != nil {
		s.base = s.Fallback.BaseContext(l)
	}
	s.base = context.WithValue(s.base, http.ServerContextKey, s.Fallback)
	// A handed connection stops counting for Shutdown once net/http has served its first
	// request (idle), or let it go (hijacked, closed): see Shutdown.
	connState := s.Fallback.ConnState
	s.Fallback.ConnState = func(c net.Conn, st http.ConnState) {
		if h, ok := c.(*handedConn); ok && (st == http.StateIdle || st == http.StateHijacked || st == http.StateClosed) {
			h.once.Do(h.served)
		}
		if connState != nil {
			connState(c, st)
		}
	}
	s.mu.Unlock()
	go func() {
		s.fallbackErr = s.Fallback.Serve(s.handoff)
		close(s.fallbackDone)
	}()

	var delay time.Duration
	for {
		rw, err := l.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() { // as net/http: back off on EMFILE and the like
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := newConn(s, rw)
		s.mu.Lock()
		if s.closing.Load() {
			s.mu.Unlock()
			rw.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve()
	}
}

// Shutdown stops accepting, closes connections as they become idle and waits for the
// requests in flight, or for ctx. The fallback server stops keeping connections alive at
// once and is shut down once the fast path's connections have ended, so that a request
// handed over meanwhile is still served. It may be called again.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutOnce.Do(func() {
		s.mu.Lock()
		s.closing.Store(true)
		ln := s.ln
		s.leanDone = make(chan struct{})
		s.mu.Unlock()
		if ln != nil {
			ln.Close()
			s.Fallback.SetKeepAlivesEnabled(false) // closes its idle connections now
		}
		go func() { s.wg.Wait(); close(s.leanDone) }()
	})
	s.mu.Lock()
	served := s.ln != nil
	s.mu.Unlock()
	if !served {
		return nil
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		s.closeIdle()
		select {
		case <-s.leanDone:
			break wait
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	// net/http drops a request it reads once its Shutdown has begun: let it serve the first
	// request of every connection handed over first — for newConnGrace at most, as for a
	// new connection of the fast path's own.
	handedDone := make(chan struct{})
	go func() { s.handed.Wait(); close(handedDone) }()
	grace := time.NewTimer(newConnGrace)
	defer grace.Stop()
	select {
	case <-handedDone:
	case <-grace.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := s.Fallback.Shutdown(ctx); err != nil {
		return err
	}
	select {
	case <-s.fallbackDone:
		if s.fallbackErr != nil && !errors.Is(s.fallbackErr, http.ErrServerClosed) {
			return s.fallbackErr
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeIdle wakes every connection waiting for a request or still reading its head, as
// net/http closes its idle ones: it sees the server closing and ends. A connection inside a
// request finishes it first, and a new one is given newConnGrace to send its first request
// (its caller may have sent it just now).
func (s *Server) closeIdle() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.mu.Lock()
		if c.state != busy && (!c.fresh || time.Since(c.accepted) > newConnGrace) {
			c.rwc.SetReadDeadline(time.Unix(1, 0))
			c.woken = true
		}
		c.mu.Unlock()
	}
}

// connState is where a fast-path connection is.
type connState uint8

const (
	idle    connState = iota // waiting for a request
	reading                  // reading a request's head
	busy                     // serving a request
)

// newConnGrace is how long Shutdown waits for a new connection's first request.
const newConnGrace = 5 * time.Second

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

func (s *Server) logPanic(v any, remote string) {
	if s.Log != nil {
		s.Log.Error("http: panic serving a request", "remote", remote, "panic", v, "stack", string(debug.Stack()))
	}
}

// conn is one accepted connection served by the fast path.
type conn struct {
	s      *Server
	rwc    net.Conn
	r      *bufio.Reader
	ctx    context.Context // requests' contexts derive from it
	out    []byte          // the answer being written, reused
	body   []byte          // the answer's body being buffered, reused
	fields []byte          // the answer's header fields, formatted, reused
	// mu orders state changes with Shutdown's closeIdle, so that a deadline it sets to wake
	// a connection is never overwritten, nor set on a request being served.
	mu       sync.Mutex
	state    connState
	fresh    bool // no request read yet since accepted
	woken    bool // closeIdle set a past deadline
	accepted time.Time
	// remote is rwc.RemoteAddr().String(), computed once.
	remote string
}

// bufSize bounds a request's head on the fast path; a longer head goes to net/http (whose
// limit is 1 MiB).
const bufSize = 8 << 10

func newConn(s *Server, rwc net.Conn) *conn {
	ctx := context.WithValue(s.base, http.LocalAddrContextKey, rwc.LocalAddr())
	if s.Fallback.ConnContext != nil {
		ctx = s.Fallback.ConnContext(ctx, rwc)
	}
	return &conn{s: s, rwc: rwc, ctx: ctx, r: bufio.NewReaderSize(rwc, bufSize), remote: rwc.RemoteAddr().String(),
		accepted: time.Now(), fresh: true}
}

func (c *conn) serve() {
	handedOff, linger := false, false
	defer func() {
		if linger {
			c.closeWriteAndWait()
		}
		if !handedOff {
			c.rwc.Close()
		}
		c.s.forget(c)
	}()
	for first := true; ; first = false {
		// The first request's head, from the first byte, within ReadHeaderTimeout (as with
		// net/http: a connection that sends nothing does not stay); later ones after up to
		// IdleTimeout of quiet.
		var deadline time.Time
		if d := c.s.IdleTimeout; !first && d > 0 {
			deadline = time.Now().Add(d)
		} else if d := c.s.ReadHeaderTimeout; first && d > 0 {
			deadline = time.Now().Add(d)
		}
		if !c.enter(idle, deadline) {
			return
		}
		if _, err := c.r.Peek(1); err != nil {
			return // closed, timed out idle, or woken by Shutdown
		}
		deadline = time.Time{}
		if d := c.s.ReadHeaderTimeout; d > 0 {
			deadline = time.Now().Add(d)
		}
		if !c.enter(reading, deadline) {
			return
		}
		head, ok, err := c.readHead()
		if err != nil {
			return // the caller went away, stalled mid-head, or was woken by Shutdown
		}
		if !ok {
			handedOff = c.handOff()
			return
		}
		u, err := url.ParseRequestURI(head.target)
		if err != nil { // net/http answers 400 to a target it cannot parse: let it
			handedOff = c.handOff()
			return
		}
		if !c.enter(busy, time.Time{}) {
			return
		}
		var keep bool
		if keep, linger = c.serveRequest(head, u); !keep {
			return
		}
	}
}

// enter moves the connection to state with the read deadline given (zero: none), and says
// false when Shutdown has woken it or, between requests, is under way: the connection ends.
func (c *conn) enter(state connState, deadline time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.woken || (state == idle && !c.fresh && c.s.closing.Load()) {
		return false
	}
	if state == busy {
		c.fresh = false
	}
	c.state = state
	c.rwc.SetReadDeadline(deadline)
	return true
}

// readHead waits until the buffer holds a whole request head and parses it. ok false means
// the request is not in the fast path's form; nothing has been consumed either way.
func (c *conn) readHead() (h head, ok bool, err error) {
	for {
		buf, _ := c.r.Peek(c.r.Buffered())
		end, odd := headEnd(buf)
		if odd {
			return head{}, false, nil
		}
		if end >= 0 {
			h, ok = parseHead(buf[:end])
			return h, ok, nil
		}
		if c.r.Buffered() >= bufSize {
			return head{}, false, nil // longer than the fast path takes
		}
		if notHTTP11(buf) {
			return head{}, false, nil // e.g. the h2c preface or HTTP/1.0: no need to wait
		}
		if _, err := c.r.Peek(c.r.Buffered() + 1); err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return head{}, false, nil
			}
			return head{}, false, err
		}
	}
}

// rstAvoidanceDelay is how long a connection closed with request bytes unread stays
// half-open (net/http's figure): closing it at once makes the kernel answer the caller's
// next bytes with a reset, which can destroy the answer (say a 413) before it is read.
const rstAvoidanceDelay = 500 * time.Millisecond

// closeWriteAndWait ends the answer stream and gives the caller time to read it.
func (c *conn) closeWriteAndWait() {
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	time.Sleep(rstAvoidanceDelay)
}

// handOff gives the connection, with what it has buffered, to the fallback server.
func (c *conn) handOff() bool {
	if !c.enter(busy, time.Time{}) {
		return false
	}
	c.s.handed.Add(1) // Shutdown waits a while for them (see there)
	if !c.s.handoff.give(&handedConn{Conn: c.rwc, r: c.r, served: c.s.handed.Done}) {
		c.s.handed.Done()
		return false
	}
	return true
}

// handedConn reads what the fast path buffered before reading the connection again.
type handedConn struct {
	net.Conn
	r      *bufio.Reader
	once   sync.Once
	served func() // called once, when net/http has served its first request or let it go
}

// CloseWrite lets net/http half-close a handed connection, as it does a TCP one, before
// closing it with request bytes unread.
func (h *handedConn) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (h *handedConn) Close() error {
	err := h.Conn.Close()
	h.once.Do(h.served)
	return err
}

func (h *handedConn) Read(p []byte) (int, error) {
	if h.r != nil {
		if h.r.Buffered() > 0 {
			return h.r.Read(p)
		}
		h.r = nil
	}
	return h.Conn.Read(p)
}

// handoffListener is the fallback server's listener: it accepts the connections handed over.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

// give waits for the fallback server to accept c, or closes c if it has shut down.
func (l *handoffListener) give(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed: // first: never a connection after Close
		return nil, net.ErrClosed
	default:
	}
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
