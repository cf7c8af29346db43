package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/events"
)

// Key is what an API key grants.
type Key struct {
	Scope  events.Scope
	Admin  bool
	Prefix string
}

// Catalog is the configuration fold. The zero value is not usable; call New.
type Catalog struct {
	mu      sync.RWMutex
	seq     uint64
	keys    map[string]Key
	meters  map[events.Scope]map[string]events.Meter
	byType  map[events.Scope]map[string][]events.Meter
	rules   map[events.Scope]map[string][]events.Rule // by rule key, versions ascending
	byMeter map[events.Scope]map[string][]string      // meter key → rule keys, sorted
	subjSeq map[string]uint64                         // config subject → sequence of its last event
	feats   map[events.Scope]map[string]events.Feature
	quotas  map[events.Scope]map[string]events.Quota
	plans   map[events.Scope]map[string]events.Plan
	hooks   map[events.Scope]map[string]events.WebhookEndpoint
	changed chan struct{} // closed and replaced after every Apply, to wake WaitFor

	// ratingLog is every config event rating reads (meters, rule versions, quotas), in stream
	// order: RatingView folds it up to a sequence. They are few — a product's pricing — and
	// kept whole.
	ratingLog []loggedEvent
	// ratingSeq is the sequence of ratingLog's last event, read without the lock: every
	// rating worker asks for it at every usage event.
	ratingSeq atomic.Uint64
	// lastView is the view RatingView made last, shared: every rating worker asks for the same
	// sequence when the configuration changes, and a view is never changed.
	viewMu   sync.Mutex
	lastView *Catalog
	viewSeq  uint64

	// frozen is set on a rating view once it is built (nothing changes it afterwards): what
	// rating asks at every event, answered from maps made once, without the lock.
	frozen *frozenIndex
}

// frozenIndex is a rating view's answers to MetersFor, RulesForMeter and QuotasForMeter.
type frozenIndex struct {
	byType map[events.Scope]map[string][]events.Meter
	rules  map[scopedKey][]events.RuleHistory
	quotas map[scopedKey][]events.Quota
}

type scopedKey struct {
	scope events.Scope
	key   string
}

// freeze indexes a rating view that is complete: it is read concurrently from then on.
func (c *Catalog) freeze() {
	f := &frozenIndex{byType: c.byType, rules: map[scopedKey][]events.RuleHistory{}, quotas: map[scopedKey][]events.Quota{}}
	for scope, meters := range c.byMeter {
		for meter := range meters {
			f.rules[scopedKey{scope, meter}] = c.RulesForMeter(scope, meter)
		}
	}
	for scope, qs := range c.quotas {
		for _, q := range qs {
			k := scopedKey{scope, q.Meter}
			if _, done := f.quotas[k]; !done {
				f.quotas[k] = c.QuotasForMeter(scope, q.Meter)
			}
		}
	}
	c.frozen = f
}

type loggedEvent struct {
	seq  uint64
	typ  string
	data []byte
}

// New returns an empty catalog.
func New() *Catalog {
	return &Catalog{
		keys:    map[string]Key{},
		meters:  map[events.Scope]map[string]events.Meter{},
		byType:  map[events.Scope]map[string][]events.Meter{},
		rules:   map[events.Scope]map[string][]events.Rule{},
		byMeter: map[events.Scope]map[string][]string{},
		subjSeq: map[string]uint64{},
		feats:   map[events.Scope]map[string]events.Feature{},
		quotas:  map[events.Scope]map[string]events.Quota{},
		plans:   map[events.Scope]map[string]events.Plan{},
		hooks:   map[events.Scope]map[string]events.WebhookEndpoint{},
		changed: make(chan struct{}),
	}
}

// HashKey is the stored form of an API key.
func HashKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// Apply folds the config event at stream sequence seq. Sequences already applied are skipped.
func (c *Catalog) Apply(seq uint64, typ string, data []byte) error {
	if c.frozen != nil {
		return fmt.Errorf("applying %s at %d: a rating view does not change", typ, seq)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if seq <= c.seq {
		return nil
	}
	c.seq = seq
	defer c.wake()
	return c.applyLocked(seq, typ, data)
}

// logRating keeps a config event rating reads, once it applied: one the follower skips as
// unreadable would fail every view folded past it, and rating with it.
func (c *Catalog) logRating(seq uint64, typ string, data []byte) {
	c.ratingLog = append(c.ratingLog, loggedEvent{seq, typ, append([]byte(nil), data...)})
	c.ratingSeq.Store(seq)
}

// quotaChangesRating says whether a quota definition changes what rating reads of quotas:
// which quotas count a meter's usage, and in which period — a new key, or another meter or
// period. One that changes only the limit or the per-customer overrides, which the ledger's
// decisions read and rating never does, is no new rating configuration: it makes no new view,
// which every partition would have to record, and no copy of its overrides in the rating log,
// which every new view folds again. Changing thousands of customers' overrides stayed
// quadratic otherwise. A rating view's quotas are therefore right in key, meter and period
// only: limits are read from the catalog. It is asked before e applies.
func (c *Catalog) quotaChangesRating(e events.QuotaDefined) bool {
	prev, ok := c.quotas[events.Scope{Product: e.Product, Env: e.Env}][e.Quota.Key]
	// Period compared with ==: an anchor at the same instant in another zone is written
	// differently into each quota use, so it is a change here too.
	return !ok || prev.Meter != e.Quota.Meter || prev.Period != e.Quota.Period
}

func (c *Catalog) applyLocked(seq uint64, typ string, data []byte) error {
	switch typ {
	case events.TypeAPIKeyCreated:
		var e events.APIKeyCreated
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		c.keys[e.Hash] = Key{Scope: events.Scope{Product: e.Product, Env: e.Env}, Admin: e.Admin, Prefix: e.Prefix}
	case events.TypeMeterDefined:
		var e events.MeterDefined
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		if c.meters[sc] == nil {
			c.meters[sc] = map[string]events.Meter{}
		}
		c.meters[sc][e.Meter.Key] = e.Meter
		c.reindex(sc)
		c.logRating(seq, typ, data)
	case events.TypeRuleVersioned:
		var e events.RuleVersioned
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		if c.rules[sc] == nil {
			c.rules[sc] = map[string][]events.Rule{}
			c.byMeter[sc] = map[string][]string{}
		}
		vs := c.rules[sc][e.Rule.Key]
		if n := len(vs); n > 0 && vs[n-1].Version >= e.Rule.Version {
			return fmt.Errorf("applying %s at %d: rule %s version %d after version %d", typ, seq, e.Rule.Key, e.Rule.Version, vs[n-1].Version)
		}
		c.rules[sc][e.Rule.Key] = append(vs, e.Rule)
		c.subjSeq[events.ConfigSubject(e.Product, e.Env, events.KindRule, e.Rule.Key)] = seq
		keys := c.byMeter[sc][e.Rule.Meter]
		if !slices.Contains(keys, e.Rule.Key) {
			keys = append(slices.Clone(keys), e.Rule.Key)
			slices.Sort(keys)
			c.byMeter[sc][e.Rule.Meter] = keys
		}
		c.logRating(seq, typ, data)
	case events.TypeWebhookEndpoint:
		var e events.WebhookEndpointChanged
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		if c.hooks[sc] == nil {
			c.hooks[sc] = map[string]events.WebhookEndpoint{}
		}
		c.hooks[sc][e.Endpoint.ID] = e.Endpoint
		c.subjSeq[events.ConfigSubject(e.Product, e.Env, events.KindWebhook, e.Endpoint.ID)] = seq
	case events.TypePlanDefined:
		var e events.PlanDefined
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		if c.plans[sc] == nil {
			c.plans[sc] = map[string]events.Plan{}
		}
		c.plans[sc][e.Plan.Key] = e.Plan
	case events.TypeQuotaDefined:
		var e events.QuotaDefined
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		rates := c.quotaChangesRating(e)
		if c.quotas[sc] == nil {
			c.quotas[sc] = map[string]events.Quota{}
		}
		c.quotas[sc][e.Quota.Key] = e.Quota.WithScope(sc)
		if rates {
			c.logRating(seq, typ, data)
		}
	case events.TypeFeatureDefined:
		var e events.FeatureDefined
		if err := json.Unmarshal(data, &e); err != nil {
			return fmt.Errorf("applying %s at %d: %w", typ, seq, err)
		}
		sc := events.Scope{Product: e.Product, Env: e.Env}
		if c.feats[sc] == nil {
			c.feats[sc] = map[string]events.Feature{}
		}
		c.feats[sc][e.Feature.Key] = e.Feature
	default:
		// A newer allot may have written kinds this one does not know; skipping them keeps an
		// older process serving what it understands.
	}
	return nil
}

func (c *Catalog) wake() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func (c *Catalog) reindex(sc events.Scope) {
	idx := map[string][]events.Meter{}
	keys := make([]string, 0, len(c.meters[sc]))
	for k := range c.meters[sc] {
		keys = append(keys, k)
	}
	slices.Sort(keys) // deterministic order for everything downstream
	for _, k := range keys {
		m := c.meters[sc][k]
		idx[m.EventType] = append(idx[m.EventType], m)
	}
	c.byType[sc] = idx
}

// RatingSeq is the config sequence of the last event rating reads (a meter, a rule version, a
// quota), 0 when none: a configuration rating has not seen changes only when it passes it.
func (c *Catalog) RatingSeq() uint64 {
	return c.ratingSeq.Load()
}

// RatingView is the configuration rating reads as it stood at config sequence seq: a catalog
// of its own, folded from the meters, rule versions and quotas up to seq, that nothing changes
// afterwards (its quotas are right in what rating reads of them, key, meter and period, not
// necessarily in their limits: quotaChangesRating). Rating rates a batch on one view, and a restarted worker on the one its snapshot
// names, so a configuration change takes effect at a point the worker recorded, not wherever
// it happened to be read. The catalog must have applied seq (WaitFor).
func (c *Catalog) RatingView(seq uint64) (*Catalog, error) {
	c.mu.RLock()
	if seq > c.seq {
		c.mu.RUnlock()
		return nil, fmt.Errorf("the catalog is at config sequence %d, not yet %d", c.seq, seq)
	}
	log := c.ratingLog[:len(c.ratingLog):len(c.ratingLog)]
	c.mu.RUnlock()
	// The view at seq is the view at the last rating event at or before it.
	at := uint64(0)
	for _, e := range log {
		if e.seq > seq {
			break
		}
		at = e.seq
	}
	c.viewMu.Lock()
	defer c.viewMu.Unlock()
	if c.lastView != nil && c.viewSeq == at {
		return c.lastView, nil
	}
	v := New()
	for _, e := range log {
		if e.seq > seq {
			break
		}
		if err := v.Apply(e.seq, e.typ, e.data); err != nil {
			return nil, err
		}
	}
	v.freeze()
	c.lastView, c.viewSeq = v, at
	return v, nil
}

// Seq is the last config stream sequence applied.
func (c *Catalog) Seq() uint64 {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.seq
}

// WaitFor blocks until sequence seq has been applied, or ctx ends.
func (c *Catalog) WaitFor(ctx context.Context, seq uint64) error {
	for {
		c.mu.RLock()
		done, ch := c.seq >= seq, c.changed
		c.mu.RUnlock()
		if done {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for config sequence %d: %w", seq, ctx.Err())
		}
	}
}

// Authenticate looks a presented API key up. The env named by the key's prefix must be the
// env it is bound to.
func (c *Catalog) Authenticate(key string) (Key, bool) {
	env, ok := KeyEnv(key)
	if !ok {
		return Key{}, false
	}
	// HashKey's hex, on the stack: the lookup converts it without allocating (every request
	// authenticates).
	sum := sha256.Sum256([]byte(key))
	var h [2 * sha256.Size]byte
	hex.Encode(h[:], sum[:])
	c.mu.RLock()
	k, ok := c.keys[string(h[:])]
	c.mu.RUnlock()
	if !ok || k.Scope.Env != env {
		return Key{}, false
	}
	return k, true
}

// HasKey reports whether the key (by hash) is known, with the grant it carries.
func (c *Catalog) HasKey(hash string) (Key, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	k, ok := c.keys[hash]
	return k, ok
}

// KeyEnv returns the env an API key's prefix names: "ak_live_…" → "live".
func KeyEnv(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, "ak_")
	if !ok {
		return "", false
	}
	env, secret, ok := strings.Cut(rest, "_")
	if !ok || events.ValidateScope(env) != nil || strings.Contains(env, "_") || len(secret) < 8 {
		return "", false
	}
	return env, true
}

// MetersFor returns the meters of scope that count events of eventType, in key order.
func (c *Catalog) MetersFor(scope events.Scope, eventType string) []events.Meter {
	if f := c.frozen; f != nil {
		return f.byType[scope][eventType]
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.byType[scope][eventType]
}

// Meter returns one meter.
func (c *Catalog) Meter(scope events.Scope, key string) (events.Meter, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	m, ok := c.meters[scope][key]
	return m, ok
}

// Meters returns every meter of scope, in key order.
func (c *Catalog) Meters(scope events.Scope) []events.Meter {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]events.Meter, 0, len(c.meters[scope]))
	for _, m := range c.meters[scope] {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b events.Meter) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// RuleVersions returns every version of a rule, ascending.
func (c *Catalog) RuleVersions(scope events.Scope, key string) []events.Rule {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rules[scope][key]
}

// Rules returns the latest version of every rule of scope, in key order.
func (c *Catalog) Rules(scope events.Scope) []events.Rule {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]events.Rule, 0, len(c.rules[scope]))
	for _, vs := range c.rules[scope] {
		out = append(out, vs[len(vs)-1])
	}
	slices.SortFunc(out, func(a, b events.Rule) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// RulesForMeter returns the version histories of the rules pricing meter, in key order. (A
// rule's meter never changes across versions; ValidateRule refuses it.)
func (c *Catalog) RulesForMeter(scope events.Scope, meter string) []events.RuleHistory {
	if f := c.frozen; f != nil {
		return f.rules[scopedKey{scope, meter}] // shared: callers only read it
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	keys := c.byMeter[scope][meter]
	out := make([]events.RuleHistory, 0, len(keys))
	for _, k := range keys {
		out = append(out, events.RuleHistory{Key: k, Versions: c.rules[scope][k]})
	}
	return out
}

// ruleState returns a rule's versions and the config sequence of its latest one.
func (c *Catalog) ruleState(scope events.Scope, key string) ([]events.Rule, uint64) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.rules[scope][key], c.subjSeq[events.ConfigSubject(scope.Product, scope.Env, events.KindRule, key)]
}

// syncTo waits until the catalog holds everything the config stream holds now.
func (c *Catalog) syncTo(ctx context.Context, js jetstream.JetStream) error {
	s, err := js.Stream(ctx, bus.ConfigStream)
	if err != nil {
		return err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return err
	}
	return c.WaitFor(ctx, info.State.LastSeq)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// Feature returns one feature.
func (c *Catalog) Feature(scope events.Scope, key string) (events.Feature, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	f, ok := c.feats[scope][key]
	return f, ok
}

// RuleInForce returns the version of a rule in force at t.
func (c *Catalog) RuleInForce(scope events.Scope, key string, t time.Time) (events.Rule, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return events.RuleHistory{Key: key, Versions: c.rules[scope][key]}.InForce(t)
}

// Quota returns one quota.
func (c *Catalog) Quota(scope events.Scope, key string) (events.Quota, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	q, ok := c.quotas[scope][key]
	return q, ok
}

// Quotas returns every quota of scope, in key order.
func (c *Catalog) Quotas(scope events.Scope) []events.Quota {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]events.Quota, 0, len(c.quotas[scope]))
	for _, q := range c.quotas[scope] {
		out = append(out, q)
	}
	slices.SortFunc(out, func(a, b events.Quota) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// QuotasForMeter returns the quotas counting a meter's usage, in key order.
func (c *Catalog) QuotasForMeter(scope events.Scope, meter string) []events.Quota {
	if f := c.frozen; f != nil {
		return f.quotas[scopedKey{scope, meter}] // shared: callers only read it
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	var out []events.Quota
	for _, q := range c.quotas[scope] {
		if q.Meter == meter {
			out = append(out, q)
		}
	}
	slices.SortFunc(out, func(a, b events.Quota) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Plan returns one plan.
func (c *Catalog) Plan(scope events.Scope, key string) (events.Plan, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	p, ok := c.plans[scope][key]
	return p, ok
}

// WebhookEndpoint returns one endpoint.
func (c *Catalog) WebhookEndpoint(scope events.Scope, id string) (events.WebhookEndpoint, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.hooks[scope][id]
	return e, ok
}

// WebhookEndpoints returns the scope's endpoints, in id order.
func (c *Catalog) WebhookEndpoints(scope events.Scope) []events.WebhookEndpoint {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]events.WebhookEndpoint, 0, len(c.hooks[scope]))
	for _, e := range c.hooks[scope] {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b events.WebhookEndpoint) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// HasWebhookEndpoints reports whether any scope has a webhook endpoint (in any state).
func (c *Catalog) HasWebhookEndpoints() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	for _, eps := range c.hooks {
		if len(eps) > 0 {
			return true
		}
	}
	return false
}

// PutWebhookEndpoint stores an endpoint's new state.
func PutWebhookEndpoint(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, ep events.WebhookEndpoint, now time.Time) error {
	e := events.WebhookEndpointChanged{Product: sc.Product, Env: sc.Env, Endpoint: ep, At: now.UTC()}
	_, err := Publish(ctx, js, cat, events.ConfigSubject(sc.Product, sc.Env, events.KindWebhook, ep.ID), events.TypeWebhookEndpoint, e)
	return err
}

// UpdateWebhookEndpoint changes endpoint id by change, decided on its latest state: the write
// expects the endpoint's last config sequence, and when another write came first (a rotation
// and a 410's disable at once, or two rotations) the catalog catches up and change decides
// again. Written whole and unconditionally, the last write won: a rotation re-enabled an
// endpoint a 410 had just disabled, and of two rotations' secrets one was lost. change reports
// whether there is anything to write; ok is false when no such endpoint exists.
func UpdateWebhookEndpoint(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, id string, now time.Time,
	change func(ep *events.WebhookEndpoint) bool) (ep events.WebhookEndpoint, ok bool, err error) {
	subject := events.ConfigSubject(sc.Product, sc.Env, events.KindWebhook, id)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cat.mu.RLock()
		ep, ok = cat.hooks[sc][id]
		lastSeq := cat.subjSeq[subject]
		cat.mu.RUnlock()
		if !ok || !change(&ep) {
			return ep, ok, nil
		}
		e := events.WebhookEndpointChanged{Product: sc.Product, Env: sc.Env, Endpoint: ep, At: now.UTC()}
		_, err = publishExpect(ctx, js, cat, subject, events.TypeWebhookEndpoint, e, lastSeq)
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence && time.Now().Before(deadline) {
			if err := cat.syncTo(ctx, js); err != nil {
				return ep, true, err
			}
			continue
		}
		return ep, true, err
	}
}

// Writer lets packages below the API change configuration: it publishes through the catalog so
// the change is applied here before the call returns.
type Writer struct {
	JS  jetstream.JetStream
	Cat *Catalog
}

// WebhookEndpoint returns one endpoint.
func (w Writer) WebhookEndpoint(scope events.Scope, id string) (events.WebhookEndpoint, bool) {
	return w.Cat.WebhookEndpoint(scope, id)
}

// WebhookEndpoints returns the scope's endpoints.
func (w Writer) WebhookEndpoints(scope events.Scope) []events.WebhookEndpoint {
	return w.Cat.WebhookEndpoints(scope)
}

// DisableEndpoint records that an endpoint is disabled, and why.
func (w Writer) DisableEndpoint(ctx context.Context, scope events.Scope, id, reason string) error {
	_, _, err := UpdateWebhookEndpoint(ctx, w.JS, w.Cat, scope, id, time.Now(), func(ep *events.WebhookEndpoint) bool {
		if ep.Disabled {
			return false
		}
		ep.Disabled, ep.DisabledReason = true, reason
		return true
	})
	return err
}
