package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
	"github.com/allot-dev/allot/webhooks"
)

// endpointView never shows secrets again after they were handed out.
func endpointView(ep events.WebhookEndpoint) map[string]any {
	secrets := make([]map[string]any, 0, len(ep.Secrets))
	for _, s := range ep.Secrets {
		secrets = append(secrets, map[string]any{"prefix": s.Secret[:min(len(s.Secret), 10)] + "…", "created_at": s.CreatedAt, "expires_at": s.ExpiresAt})
	}
	return map[string]any{"id": ep.ID, "url": ep.URL, "events": ep.Events, "low_balance_threshold": ep.LowBalanceThreshold,
		"disabled": ep.Disabled, "disabled_reason": ep.DisabledReason, "secrets": secrets}
}

func (s *Server) postWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	var b struct {
		URL                 string          `json:"url"`
		Events              []string        `json:"events"`
		LowBalanceThreshold *events.Credits `json:"low_balance_threshold,omitempty"`
	}
	if p := s.decodeBody(w, r, &b); p != nil {
		problem.Write(w, p)
		return
	}
	u, err := url.Parse(b.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, "url", "url must be an absolute http(s) URL"))
		return
	}
	if !s.o.WebhooksAllowPrivate {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		err := webhooks.CheckHost(ctx, u.Hostname())
		cancel()
		if err != nil {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, "url", "url: %v", err))
			return
		}
	}
	if len(b.Events) == 0 {
		problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, "events", "list the event types to receive (or \"*\")"))
		return
	}
	for i, t := range b.Events {
		if t != "*" && !contains(events.HookTypes, t) {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusUnprocessableEntity, fmt.Sprintf("events[%d]", i), "%q is not one of %v", t, events.HookTypes))
			return
		}
	}
	secret := webhooks.NewSecret()
	ep := events.WebhookEndpoint{ID: newID("whe_", r, ""), URL: b.URL, Events: b.Events, LowBalanceThreshold: b.LowBalanceThreshold,
		Secrets: []events.WebhookSecret{{Secret: secret, CreatedAt: s.o.Now().UTC()}}}
	if err := catalog.PutWebhookEndpoint(r.Context(), s.o.JS, s.o.Catalog, scopeFrom(r), ep, s.o.Now()); err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	v := endpointView(ep)
	v["secret"] = secret // shown once
	writeJSON(w, http.StatusCreated, v)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func (s *Server) getWebhookEndpoint(w http.ResponseWriter, r *http.Request) {
	ep, ok := s.o.Catalog.WebhookEndpoint(scopeFrom(r), r.PathValue("id"))
	if !ok {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such webhook endpoint"))
		return
	}
	writeJSON(w, http.StatusOK, endpointView(ep))
}

// postRotate adds a new secret; the previous ones stay valid for a day, so deliveries carry
// both signatures while receivers switch.
func (s *Server) postRotate(w http.ResponseWriter, r *http.Request) {
	if p := s.decodeBody(w, r, &struct{}{}); p != nil {
		problem.Write(w, p)
		return
	}
	sc, now := scopeFrom(r), s.o.Now().UTC()
	secret := webhooks.NewSecret()
	until := now.Add(24 * time.Hour)
	// Decided on the endpoint's latest state (a concurrent rotation's secret, a 410's disable
	// are kept), again after a lost race.
	ep, ok, err := catalog.UpdateWebhookEndpoint(r.Context(), s.o.JS, s.o.Catalog, sc, r.PathValue("id"), now, func(ep *events.WebhookEndpoint) bool {
		var keep []events.WebhookSecret
		for _, sec := range ep.Secrets {
			if sec.ExpiresAt != nil && !now.Before(*sec.ExpiresAt) {
				continue
			}
			if sec.ExpiresAt == nil || sec.ExpiresAt.After(until) {
				sec.ExpiresAt = &until
			}
			keep = append(keep, sec)
		}
		ep.Secrets = append(keep, events.WebhookSecret{Secret: secret, CreatedAt: now})
		return true
	})
	switch {
	case !ok:
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such webhook endpoint"))
		return
	case err != nil:
		problem.Write(w, unavailable(err))
		return
	}
	v := endpointView(ep)
	v["secret"] = secret
	writeJSON(w, http.StatusOK, v)
}

// getDeliveries lists an endpoint's latest delivery attempts, newest last.
func (s *Server) getDeliveries(w http.ResponseWriter, r *http.Request) {
	sc := scopeFrom(r)
	id := r.PathValue("id")
	if _, ok := s.o.Catalog.WebhookEndpoint(sc, id); !ok {
		problem.Write(w, problem.New(problem.NotFound, http.StatusNotFound, "no such webhook endpoint"))
		return
	}
	limit := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "limit", "limit must be from 1 to 1000"))
			return
		}
		limit = n
	}
	// Pages go back in time: the first is the newest attempts, and next_cursor (the stream
	// sequence of a page's oldest) asks for the ones before it.
	before := uint64(math.MaxUint64)
	if c := r.URL.Query().Get("cursor"); c != "" {
		n, err := strconv.ParseUint(c, 10, 64)
		if err != nil || n == 0 {
			problem.Write(w, problem.Fieldf(problem.InvalidField, http.StatusBadRequest, "cursor", "cursor is not one this API gave out"))
			return
		}
		before = n
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	cons, err := s.o.JS.OrderedConsumer(ctx, bus.WebhookLogStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"allot.whlog." + id}})
	if err != nil {
		problem.Write(w, unavailable(err))
		return
	}
	// Read whole: the log keeps at most 1,000 attempts an endpoint (bus.WebhookLogStream).
	var all []json.RawMessage
	var seqs []uint64
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			break
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, err := m.Metadata()
			if err != nil || md.Sequence.Stream >= before {
				continue
			}
			all, seqs = append(all, json.RawMessage(m.Data())), append(seqs, md.Sequence.Stream)
		}
		if n == 0 {
			break
		}
	}
	var next any
	if len(all) > limit {
		all, seqs = all[len(all)-limit:], seqs[len(seqs)-limit:]
		next = strconv.FormatUint(seqs[0], 10)
	}
	if all == nil {
		all = []json.RawMessage{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": all, "next_cursor": next})
}

// notifyQuotaExceeded queues quota.exceeded once per (customer, quota, window).
func (s *Server) notifyQuotaExceeded(ctx context.Context, scope events.Scope, customer string, st []projector.QuotaStatus) {
	for _, q := range st {
		if q.Allowed {
			continue
		}
		sum := sha256.Sum256([]byte(scope.String() + "\x00" + customer + "\x00" + q.Quota + "\x00" + q.WindowStart.String()))
		id := "msg_q" + hex.EncodeToString(sum[:12])
		if s.o.Notified != nil {
			// Claimed until the window ends: the outbox's duplicate window alone let a daily
			// quota's refusals an hour apart notify twice.
			ttl := max(q.ResetsAt.Sub(s.o.Now())+time.Minute, time.Second)
			_, err := s.o.Notified.Create(ctx, id, []byte{'1'}, jetstream.KeyTTL(ttl))
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // notified already in this window
			}
			if err != nil {
				s.o.Log.Warn("claiming quota.exceeded", "err", err) // the outbox's dedup still applies
			}
		}
		note := events.Notification{ID: id, Type: events.HookQuotaExceeded, Customer: customer, At: s.o.Now().UTC(),
			Data: map[string]any{"quota": q.Quota, "limit": q.Limit, "used": q.Used, "requested": q.Requested, "window_start": q.WindowStart, "resets_at": q.ResetsAt}}
		if err := webhooks.Publish(ctx, s.o.JS, scope, note); err != nil && !errors.Is(err, nats.ErrNoResponders) {
			s.o.Log.Warn("queueing quota.exceeded", "err", err)
			if s.o.Notified != nil {
				// Not queued: the claim goes, so the next refusal in the window tries again
				// (kept, it silenced the window, up to a month, for a notification never sent).
				_ = s.o.Notified.Delete(context.WithoutCancel(ctx), id)
			}
		}
	}
}
