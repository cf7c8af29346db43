package webhooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// DefaultSchedule is when failed deliveries are retried: 7 retries after the first attempt.
var DefaultSchedule = []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 5 * time.Hour, 10 * time.Hour, 10 * time.Hour}

// DefaultTimeout bounds one delivery attempt.
const DefaultTimeout = 15 * time.Second

// EndpointStore is what the dispatcher needs of configuration.
type EndpointStore interface {
	WebhookEndpoint(scope events.Scope, id string) (events.WebhookEndpoint, bool)
	WebhookEndpoints(scope events.Scope) []events.WebhookEndpoint
	// DisableEndpoint records that an endpoint answered 410 Gone.
	DisableEndpoint(ctx context.Context, scope events.Scope, id, reason string) error
}

// Dispatcher delivers the outbox.
type Dispatcher struct {
	JS           jetstream.JetStream
	KV           jetstream.KeyValue
	Endpoints    EndpointStore
	OutboxStream string
	Schedule     []time.Duration // default DefaultSchedule
	Timeout      time.Duration   // default DefaultTimeout
	// AllowPrivate lets deliveries reach addresses that are not public (PublicAddress):
	// loopback, private networks, link-local. Off, such connections are refused.
	AllowPrivate bool
	Log          *slog.Logger

	Delivered, Failed, DeadLettered atomic.Int64

	client  *http.Client
	mu      sync.Mutex
	queues  map[string]*queue // by customer+endpoint
	pending map[uint64]int    // outbox sequence → deliveries not done yet
	keys    map[uint64][]string
	read    uint64 // last outbox sequence read
}

type delivery struct {
	seq      uint64
	scope    events.Scope
	note     events.Notification
	sequence uint64 // per-customer sequence number
	endpoint string
}

type queue struct {
	items []delivery
	busy  bool
}

type attemptState struct {
	Attempts int       `json:"attempts"`
	NextAt   time.Time `json:"next_at"`
	Done     bool      `json:"done"`
}

// Run delivers until ctx ends, resuming from the saved floor after any failure.
func (d *Dispatcher) Run(ctx context.Context) error {
	if d.Schedule == nil {
		d.Schedule = DefaultSchedule
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if !d.AllowPrivate {
		tr.Proxy = nil // the address checked must be the endpoint's own, not a proxy's
		tr.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, Control: publicOnly}).DialContext
	}
	d.client = &http.Client{Timeout: d.Timeout, Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	backoff := 200 * time.Millisecond
	for ctx.Err() == nil {
		rctx, cancel := context.WithCancel(ctx)
		err := d.run(rctx)
		cancel()
		if ctx.Err() != nil {
			return nil
		}
		d.Log.Warn("webhook dispatcher restarting", "err", err, "in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(backoff*2, 10*time.Second)
	}
	return nil
}

func (d *Dispatcher) kvUint(ctx context.Context, key string) (uint64, bool, error) {
	e, err := d.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	v, err := strconv.ParseUint(string(e.Value()), 10, 64)
	return v, true, err
}

func (d *Dispatcher) run(ctx context.Context) error {
	floor, _, err := d.kvUint(ctx, "dispatch.floor")
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.queues, d.pending, d.keys, d.read = map[string]*queue{}, map[uint64]int{}, map[uint64][]string{}, floor
	d.mu.Unlock()
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if floor > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	}
	cons, err := d.JS.OrderedConsumer(ctx, d.OutboxStream, cfg)
	if err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return err
	}
	defer it.Stop()
	// The deliveries stop when run returns, whatever the reason: waiting for them first kept a
	// failed run — and every customer's deliveries with it — waiting on the longest retry.
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel() // before the wait (deferred calls run last in, first out)
	for ctx.Err() == nil {
		m, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				if err := d.saveFloor(ctx); err != nil {
					return err
				}
				continue
			}
			return err
		}
		if err := d.enqueue(ctx, m, &wg); err != nil {
			return err
		}
	}
	return nil
}

// enqueue fans a notification out to the (customer, endpoint) queues that take it.
func (d *Dispatcher) enqueue(ctx context.Context, m jetstream.Msg, wg *sync.WaitGroup) error {
	md, err := m.Metadata()
	if err != nil {
		return err
	}
	seq := md.Sequence.Stream
	var note events.Notification
	if err := json.Unmarshal(m.Data(), &note); err != nil {
		d.Log.Warn("unreadable notification", "seq", seq, "err", err)
		d.markRead(seq)
		return nil
	}
	var sc events.Scope
	if parts := splitSubject(m.Subject()); len(parts) == 5 {
		sc = events.Scope{Product: parts[2], Env: parts[3]}
	}
	// The per-customer sequence number, assigned once in outbox order and kept.
	custKey := "cseq." + shortID(sc.Product, sc.Env, note.Customer)
	nkey := "nseq." + strconv.FormatUint(seq, 10)
	number, ok, err := d.kvUint(ctx, nkey)
	if err != nil {
		return err
	}
	if !ok {
		last, _, err := d.kvUint(ctx, custKey)
		if err != nil {
			return err
		}
		number = last + 1
		if _, err := d.KV.Put(ctx, custKey, []byte(strconv.FormatUint(number, 10))); err != nil {
			return err
		}
		if _, err := d.KV.Put(ctx, nkey, []byte(strconv.FormatUint(number, 10))); err != nil {
			return err
		}
	}
	var targets []string
	for _, ep := range d.Endpoints.WebhookEndpoints(sc) {
		if ep.Disabled || !subscribed(ep, note.Type) || (note.Endpoint != "" && note.Endpoint != ep.ID) {
			continue
		}
		targets = append(targets, ep.ID)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.read = seq
	d.keys[seq] = []string{nkey}
	if len(targets) == 0 {
		return nil
	}
	d.pending[seq] = len(targets)
	for _, ep := range targets {
		qk := sc.String() + "\x00" + note.Customer + "\x00" + ep
		q := d.queues[qk]
		if q == nil {
			q = &queue{}
			d.queues[qk] = q
		}
		q.items = append(q.items, delivery{seq: seq, scope: sc, note: note, sequence: number, endpoint: ep})
		d.keys[seq] = append(d.keys[seq], attKey(seq, ep))
		if !q.busy {
			q.busy = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				d.drain(ctx, qk, q)
			}()
		}
	}
	return nil
}

func (d *Dispatcher) markRead(seq uint64) {
	d.mu.Lock()
	d.read = max(d.read, seq)
	d.mu.Unlock()
}

func splitSubject(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func attKey(seq uint64, ep string) string { return "att." + strconv.FormatUint(seq, 10) + "." + ep }

// drain delivers a (customer, endpoint) queue in order until it is empty.
func (d *Dispatcher) drain(ctx context.Context, qk string, q *queue) {
	for ctx.Err() == nil {
		d.mu.Lock()
		if len(q.items) == 0 {
			q.busy = false
			delete(d.queues, qk)
			d.mu.Unlock()
			return
		}
		item := q.items[0]
		d.mu.Unlock()
		if err := d.deliver(ctx, item); err != nil {
			if ctx.Err() == nil {
				d.Log.Warn("webhook delivery state", "err", err)
				time.Sleep(time.Second)
			}
			continue
		}
		d.mu.Lock()
		q.items = q.items[1:]
		d.pending[item.seq]--
		if d.pending[item.seq] <= 0 {
			delete(d.pending, item.seq)
		}
		d.mu.Unlock()
	}
}

// deliver runs one delivery to its end: delivered, endpoint gone, or dead-lettered.
func (d *Dispatcher) deliver(ctx context.Context, it delivery) error {
	key := attKey(it.seq, it.endpoint)
	var st attemptState
	e, err := d.KV.Get(ctx, key)
	switch {
	case err == nil:
		if err := json.Unmarshal(e.Value(), &st); err != nil {
			return err
		}
	case errors.Is(err, jetstream.ErrKeyNotFound):
	default:
		return err
	}
	for !st.Done {
		if wait := time.Until(st.NextAt); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		ep, ok := d.Endpoints.WebhookEndpoint(it.scope, it.endpoint)
		if !ok || ep.Disabled {
			st.Done = true
			break
		}
		status, derr := d.post(ctx, ep, it)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		st.Attempts++
		entry := map[string]any{"notification": it.note.ID, "type": it.note.Type, "customer": it.note.Customer, "sequence": it.sequence,
			"attempt": st.Attempts, "status": status, "at": time.Now().UTC()}
		switch {
		case derr == nil && status >= 200 && status < 300:
			st.Done = true
			entry["result"] = "delivered"
			d.Delivered.Add(1)
		case status == http.StatusGone:
			st.Done = true
			entry["result"] = "endpoint_disabled"
			if err := d.Endpoints.DisableEndpoint(ctx, it.scope, it.endpoint, "answered 410 Gone"); err != nil {
				return err
			}
		case st.Attempts > len(d.Schedule):
			st.Done = true
			entry["result"] = "dead_lettered"
			d.DeadLettered.Add(1)
		default:
			st.NextAt = time.Now().Add(d.Schedule[st.Attempts-1])
			entry["result"], entry["next_at"] = "retry", st.NextAt.UTC()
			d.Failed.Add(1)
		}
		if derr != nil {
			entry["error"] = derr.Error()
		}
		d.log(ctx, it.endpoint, entry, entry["result"] == "dead_lettered", it)
		b, _ := json.Marshal(st)
		if _, err := d.KV.Put(ctx, key, b); err != nil {
			return err
		}
	}
	return nil
}

// post makes one signed attempt.
func (d *Dispatcher) post(ctx context.Context, ep events.WebhookEndpoint, it delivery) (int, error) {
	body, _ := json.Marshal(map[string]any{"id": it.note.ID, "type": it.note.Type, "customer": it.note.Customer, "sequence": it.sequence,
		"timestamp": it.note.At, "data": it.note.Data, "product": it.scope.Product, "env": it.scope.Env})
	now := time.Now()
	var secrets []string
	for _, s := range ep.Secrets {
		if s.ExpiresAt == nil || now.Before(*s.ExpiresAt) {
			secrets = append(secrets, s.Secret)
		}
	}
	sig, err := Sign(secrets, it.note.ID, now, body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", it.note.ID)
	req.Header.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("webhook-signature", sig)
	req.Header.Set("User-Agent", "allot-webhooks")
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode, nil
}

// log appends to the endpoint's delivery log (and dead letters to its dead-letter subject).
func (d *Dispatcher) log(ctx context.Context, ep string, entry map[string]any, dead bool, it delivery) {
	b, _ := json.Marshal(entry)
	if _, err := d.JS.Publish(ctx, "allot.whlog."+ep, b); err != nil {
		d.Log.Warn("webhook delivery log", "err", err)
	}
	if dead {
		nb, _ := json.Marshal(it.note)
		if _, err := d.JS.Publish(ctx, "allot.whlog.dead."+ep, nb); err != nil {
			d.Log.Warn("webhook dead letter", "err", err)
		}
	}
}

// saveFloor records the outbox sequence below which everything is done, and forgets the
// state of deliveries below it.
func (d *Dispatcher) saveFloor(ctx context.Context) error {
	d.mu.Lock()
	floor := d.read
	for seq := range d.pending {
		floor = min(floor, seq-1)
	}
	var forget []string
	var seqs []uint64
	for seq, ks := range d.keys {
		if seq <= floor {
			forget = append(forget, ks...)
			seqs = append(seqs, seq)
		}
	}
	for _, s := range seqs {
		delete(d.keys, s)
	}
	d.mu.Unlock()
	old, _, err := d.kvUint(ctx, "dispatch.floor")
	if err != nil {
		return err
	}
	if floor > old {
		if _, err := d.KV.Put(ctx, "dispatch.floor", []byte(strconv.FormatUint(floor, 10))); err != nil {
			return err
		}
	}
	slices.Sort(forget)
	for _, k := range forget {
		d.KV.Delete(ctx, k) // best effort: stale state below the floor is never read
	}
	return nil
}
