// Package client is the Go client of an allot server, for services (balances, entitlement
// checks, reservations, quotas) and producers (usage over HTTP, or straight onto JetStream).
//
// Every call retries network errors and 5xx answers with backoff. Calls that change state send
// an Idempotency-Key generated once per call and reused by its retries, so a retry never
// applies twice; usage events are deduplicated by their own ids. Amounts are decimal strings,
// never floats.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// Client talks to one allot HTTP endpoint (a load balancer in front of several is fine).
type Client struct {
	BaseURL string
	APIKey  string
	HTTP    *http.Client
	// Retries after the first attempt; default 4. Backoff doubles from 50 ms (at most 2 s) and
	// follows Retry-After. Retrying goes on past Retries while Patience has not run out (default
	// 30 s): a fail-over in the cluster can take that long, and every retry is safe.
	Retries  int
	Patience time.Duration
}

// New returns a client with a 10 s request timeout.
func New(baseURL, apiKey string) *Client {
	return &Client{BaseURL: strings.TrimSuffix(baseURL, "/"), APIKey: apiKey, HTTP: &http.Client{Timeout: 10 * time.Second}, Retries: 4, Patience: 30 * time.Second}
}

// Problem is an allot error answer (RFC 9457).
type Problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail"`
	Field  string         `json:"field"`
	Extra  map[string]any `json:"-"`
}

func (p *Problem) Error() string {
	if p.Field != "" {
		return fmt.Sprintf("allot: %d %s (%s): %s", p.Status, p.Title, p.Field, p.Detail)
	}
	return fmt.Sprintf("allot: %d %s: %s", p.Status, p.Title, p.Detail)
}

// Is lets errors.Is match problems by type suffix: errors.Is(err, client.ErrQuotaExceeded).
// allot's own per-key request limit answers with a quota-exceeded problem marked
// "limit-scope": "api-key": that is ErrKeyRateLimited, never a quota's refusal.
func (p *Problem) Is(target error) bool {
	t, ok := target.(*Problem)
	if !ok {
		return false
	}
	if t == ErrKeyRateLimited {
		return p.keyLimited()
	}
	return t.Type != "" && strings.HasSuffix(p.Type, "/"+t.Type) && !(t == ErrQuotaExceeded && p.keyLimited())
}

func (p *Problem) keyLimited() bool {
	return p.Status == http.StatusTooManyRequests && p.Extra["limit-scope"] == "api-key"
}

// Problem kinds to match with errors.Is.
var (
	ErrQuotaExceeded = &Problem{Type: "quota-exceeded"}
	// ErrKeyRateLimited: this client's API key made more requests this minute than allot
	// takes (--key-requests-per-minute). Retried within Patience; what is left is this.
	ErrKeyRateLimited      = &Problem{Type: "api-key-rate-limited"}
	ErrInsufficientCredits = &Problem{Type: "insufficient-credits"}
	ErrReservationExpired  = &Problem{Type: "reservation-expired"}
	ErrNotFound            = &Problem{Type: "not-found"}
)

func newKey() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// do sends a request, retrying what is safe to retry, and decodes the answer into out.
func (c *Client) do(ctx context.Context, method, path string, body any, idempotent bool, out any) (http.Header, error) {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return nil, err
		}
	}
	key := ""
	if idempotent {
		key = newKey()
	}
	backoff := 50 * time.Millisecond
	var lastErr error
	start := time.Now()
	for attempt := 0; attempt <= c.Retries || time.Since(start) < c.Patience; attempt++ {
		if attempt > 0 {
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			backoff = min(backoff*2, 2*time.Second)
		}
		req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+c.APIKey)
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := c.HTTP.Do(req)
		if err != nil {
			lastErr = err
			continue
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		resp.Body.Close()
		if resp.StatusCode < 300 {
			if out != nil && len(b) > 0 {
				if err := json.Unmarshal(b, out); err != nil {
					return resp.Header, fmt.Errorf("allot: reading %s %s: %w", method, path, err)
				}
			}
			return resp.Header, nil
		}
		p := &Problem{Status: resp.StatusCode}
		json.Unmarshal(b, p)
		json.Unmarshal(b, &p.Extra)
		lastErr = p
		// 5xx and "still in flight" are worth another try; anything else is an answer.
		if resp.StatusCode >= 500 || (resp.StatusCode == http.StatusConflict && strings.HasSuffix(p.Type, "/idempotency-key-in-flight")) {
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && ra > 0 && ra < 30 {
				backoff = time.Duration(ra) * time.Second
			}
			continue
		}
		// allot's own per-key limit: the key's minute ends within Retry-After, so the request
		// is worth sending again then, if that is within Patience.
		if p.keyLimited() {
			ra, err := strconv.Atoi(resp.Header.Get("Retry-After"))
			wait := time.Duration(ra) * time.Second
			deadline, hasDeadline := ctx.Deadline()
			if err == nil && ra > 0 && time.Since(start)+wait <= c.Patience && !(hasDeadline && time.Now().Add(wait).After(deadline)) {
				backoff = wait
				continue
			}
		}
		return resp.Header, p
	}
	return nil, lastErr
}

// Event is a usage event.
type Event struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Customer string         `json:"customer"`
	Time     *time.Time     `json:"time,omitempty"`
	Source   string         `json:"source,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
}

// IngestResult is the answer to SendEvents.
type IngestResult struct {
	Accepted   int `json:"accepted"`
	Duplicates int `json:"duplicates"`
	Rejected   []struct {
		Index   int     `json:"index"`
		Problem Problem `json:"problem"`
	} `json:"rejected"`
}

// SendEvents posts a batch. Retrying is safe: events already stored come back as duplicates.
func (c *Client) SendEvents(ctx context.Context, evs []Event) (IngestResult, error) {
	var r IngestResult
	_, err := c.do(ctx, http.MethodPost, "/v1/events", evs, false, &r)
	return r, err
}

// PublishEvent puts one event straight onto the usage stream of a NATS connection to allot's
// JetStream, with the dedup key HTTP ingest uses.
func PublishEvent(ctx context.Context, js jetstream.JetStream, product, env string, ev Event) error {
	if ev.Time == nil {
		now := time.Now().UTC()
		ev.Time = &now
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: events.UsageSubject(product, env, ev.Customer), Data: b}
	_, err = js.PublishMsg(ctx, msg, jetstream.WithMsgID(events.UsageMsgID(product, env, ev.ID)))
	return err
}

// Block is a credit block.
type Block struct {
	ID          string     `json:"id"`
	Source      string     `json:"source"`
	Priority    int        `json:"priority"`
	Granted     string     `json:"granted"`
	Remaining   string     `json:"remaining"`
	EffectiveAt time.Time  `json:"effective_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	Status      string     `json:"status"`
}

// Balance is a customer's balance.
type Balance struct {
	Customer         string  `json:"customer"`
	CustomerID       string  `json:"customer_id"`
	Balance          string  `json:"balance"`
	Reserved         string  `json:"reserved"`
	EffectiveBalance string  `json:"effective_balance"`
	Overage          string  `json:"overage"`
	Debited          string  `json:"debited"`
	Blocks           []Block `json:"blocks"`
	Version          uint64  `json:"version"`
}

// Balance reads a customer's balance (external id or allot's UUID).
func (c *Client) Balance(ctx context.Context, customer string) (Balance, error) {
	var b Balance
	_, err := c.do(ctx, http.MethodGet, "/v1/customers/"+url.PathEscape(customer)+"/balance", nil, false, &b)
	return b, err
}

// Grant is a request for credits.
type Grant struct {
	Amount      string     `json:"amount"`
	Source      string     `json:"source"`
	Priority    *int       `json:"priority,omitempty"`
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	CostBasis   string     `json:"cost_basis,omitempty"`
}

// Grant adds a credit block, once whatever the retries.
func (c *Client) Grant(ctx context.Context, customer string, g Grant) (Block, error) {
	var b Block
	_, err := c.do(ctx, http.MethodPost, "/v1/customers/"+url.PathEscape(customer)+"/grants", g, true, &b)
	return b, err
}

// Entitlement is the answer of an entitlement check.
type Entitlement struct {
	Allowed          bool   `json:"allowed"`
	Reason           string `json:"reason"`
	Balance          string `json:"balance"`
	EffectiveBalance string `json:"effective_balance"`
	EstimatedCost    string `json:"estimated_cost"`
}

// CheckEntitlement asks whether customer may use feature for quantity ("" = 1).
func (c *Client) CheckEntitlement(ctx context.Context, customer, feature, quantity string) (Entitlement, error) {
	body := map[string]string{"customer": customer, "feature": feature}
	if quantity != "" {
		body["quantity"] = quantity
	}
	var e Entitlement
	_, err := c.do(ctx, http.MethodPost, "/v1/entitlements/check", body, false, &e)
	return e, err
}

// Reservation is a hold on credits.
type Reservation struct {
	ID        string    `json:"id"`
	Customer  string    `json:"customer"`
	Status    string    `json:"status"`
	Amount    string    `json:"amount"`
	Committed string    `json:"committed"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Reserve holds amount for ttl (0: the server's default), in whole seconds rounded up: 500ms
// was sent as 0 and refused, 1.9 s held for 1.
func (c *Client) Reserve(ctx context.Context, customer, amount string, ttl time.Duration) (Reservation, error) {
	body := map[string]any{"customer": customer, "amount": amount}
	if ttl > 0 {
		body["ttl_seconds"] = int((ttl + time.Second - 1) / time.Second)
	}
	var r Reservation
	_, err := c.do(ctx, http.MethodPost, "/v1/reservations", body, true, &r)
	return r, err
}

// Commit debits a reservation: amount "" commits what is held.
func (c *Client) Commit(ctx context.Context, id, amount string) (Reservation, error) {
	body := map[string]any{}
	if amount != "" {
		body["amount"] = amount
	}
	var r Reservation
	_, err := c.do(ctx, http.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/commit", body, true, &r)
	return r, err
}

// Release ends a hold without a debit.
func (c *Client) Release(ctx context.Context, id string) (Reservation, error) {
	var r Reservation
	_, err := c.do(ctx, http.MethodPost, "/v1/reservations/"+url.PathEscape(id)+"/release", map[string]any{}, true, &r)
	return r, err
}

// QuotaStatus is a quota's window for a customer.
type QuotaStatus struct {
	Allowed     bool      `json:"allowed"`
	Used        string    `json:"used"`
	Limit       string    `json:"limit"`
	Remaining   string    `json:"remaining"`
	WindowStart time.Time `json:"window_start"`
	ResetsAt    time.Time `json:"resets_at"`
}

// QuotaCheck asks whether amount ("" = 1) would fit, changing nothing.
func (c *Client) QuotaCheck(ctx context.Context, quota, customer, amount string) (QuotaStatus, error) {
	return c.quota(ctx, "check", quota, customer, amount, false)
}

// QuotaIncrement counts amount ("" = 1) if it fits; errors.Is(err, ErrQuotaExceeded) when not.
func (c *Client) QuotaIncrement(ctx context.Context, quota, customer, amount string) (QuotaStatus, error) {
	return c.quota(ctx, "increment", quota, customer, amount, true)
}

func (c *Client) quota(ctx context.Context, op, quota, customer, amount string, idem bool) (QuotaStatus, error) {
	body := map[string]any{"customer": customer}
	if amount != "" {
		body["amount"] = amount
	}
	var q QuotaStatus
	_, err := c.do(ctx, http.MethodPost, "/v1/quotas/"+url.PathEscape(quota)+"/"+op, body, idem, &q)
	return q, err
}
