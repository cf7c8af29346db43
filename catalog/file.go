package catalog

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"gopkg.in/yaml.v3"

	"github.com/allot-dev/allot/events"
)

// File is the shape of `allot serve --config allot.yaml`.
type File struct {
	Keys     []FileKey            `yaml:"keys"`
	Meters   map[string]MeterSpec `yaml:"meters"`
	Rules    map[string]yaml.Node `yaml:"rules"` // RuleSpec shapes; numbers kept exactly as written
	Quotas   map[string]yaml.Node `yaml:"quotas"`
	Features map[string]yaml.Node `yaml:"features"`
	Plans    map[string]yaml.Node `yaml:"plans"`
	Products []FileScope          `yaml:"products"`
}

// FileKey bootstraps one API key. Plaintext is for development; only its hash is stored.
type FileKey struct {
	Key     string `yaml:"key"`
	Product string `yaml:"product"`
	Env     string `yaml:"env"`
	Admin   bool   `yaml:"admin"`
}

// FileScope holds configuration for one (product, env) when a file serves several.
type FileScope struct {
	Product  string               `yaml:"product"`
	Env      string               `yaml:"env"`
	Meters   map[string]MeterSpec `yaml:"meters"`
	Rules    map[string]yaml.Node `yaml:"rules"`
	Features map[string]yaml.Node `yaml:"features"`
	Quotas   map[string]yaml.Node `yaml:"quotas"`
}

// MeterSpec is the body of PUT /v1/meters/{key}.
type MeterSpec struct {
	EventType     string            `yaml:"event_type" json:"event_type"`
	Aggregation   string            `yaml:"aggregation" json:"aggregation"`
	ValueProperty string            `yaml:"value_property" json:"value_property,omitempty"`
	Filters       map[string]string `yaml:"filters" json:"filters,omitempty"`
	GroupBy       []string          `yaml:"group_by" json:"group_by,omitempty"`
}

// Meter returns the meter this spec defines under key.
func (s MeterSpec) Meter(key string) events.Meter {
	return events.Meter{Key: key, EventType: s.EventType, Aggregation: s.Aggregation, ValueProperty: s.ValueProperty, Filters: s.Filters, GroupBy: s.GroupBy}
}

// LoadFile reads and checks a config file. Unknown fields are errors: a typo must not be
// silently ignored in a file that decides what customers are charged.
func LoadFile(path string) (File, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("reading config: %w", err)
	}
	var f File
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return File{}, fmt.Errorf("config %s: %w", path, err)
	}
	for name, m := range map[string]map[string]yaml.Node{"plans": f.Plans} {
		if len(m) > 0 {
			return File{}, fmt.Errorf("config %s: %s are not supported by this version of allot yet", path, name)
		}
	}
	for i, k := range f.Keys {
		if fe := ValidateKeyGrant(k.Key, k.Product, k.Env); fe != nil {
			return File{}, fmt.Errorf("config %s: keys[%d].%s: %s", path, i, fe.Field, fe.Msg)
		}
	}
	if len(f.Meters) > 0 || len(f.Rules) > 0 || len(f.Features) > 0 || len(f.Quotas) > 0 {
		if _, err := f.defaultScope(); err != nil {
			return File{}, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for i, s := range f.Products {
		if err := events.ValidateScope(s.Product); err != nil {
			return File{}, fmt.Errorf("config %s: products[%d].product: %w", path, i, err)
		}
		if err := events.ValidateScope(s.Env); err != nil {
			return File{}, fmt.Errorf("config %s: products[%d].env: %w", path, i, err)
		}
	}
	for _, sm := range f.scopedMeters() {
		for key, spec := range sm.meters {
			if _, fe := ValidateMeter(spec.Meter(key)); fe != nil {
				return File{}, fmt.Errorf("config %s: meters.%s.%s: %s", path, key, fe.Field, fe.Msg)
			}
		}
		for key, node := range sm.rules {
			if _, err := decodeRuleNode(node); err != nil {
				return File{}, fmt.Errorf("config %s: rules.%s: %w", path, key, err)
			}
		}
		for key, node := range sm.features {
			if err := decodeNode(node, &FeatureSpec{}); err != nil {
				return File{}, fmt.Errorf("config %s: features.%s: %w", path, key, err)
			}
		}
		for key, node := range sm.quotas {
			if err := decodeNode(node, &QuotaSpec{}); err != nil {
				return File{}, fmt.Errorf("config %s: quotas.%s: %w", path, key, err)
			}
		}
	}
	return f, nil
}

// defaultScope is the (product, env) that top-level maps apply to: that of the keys, which
// must then all share one.
func (f File) defaultScope() (events.Scope, error) {
	var sc events.Scope
	for _, k := range f.Keys {
		s := events.Scope{Product: k.Product, Env: k.Env}
		if sc != (events.Scope{}) && sc != s {
			return sc, fmt.Errorf("top-level meters and rules apply to the keys' product and env, but the keys name several; use products: [{product, env, meters, rules}]")
		}
		sc = s
	}
	if sc == (events.Scope{}) {
		return sc, fmt.Errorf("top-level meters and rules need a key to say which product and env they belong to")
	}
	return sc, nil
}

type scopedMeters struct {
	scope    events.Scope
	meters   map[string]MeterSpec
	rules    map[string]yaml.Node
	features map[string]yaml.Node
	quotas   map[string]yaml.Node
}

func (f File) scopedMeters() []scopedMeters {
	var out []scopedMeters
	if len(f.Meters) > 0 || len(f.Rules) > 0 || len(f.Features) > 0 || len(f.Quotas) > 0 {
		sc, _ := f.defaultScope()
		out = append(out, scopedMeters{sc, f.Meters, f.Rules, f.Features, f.Quotas})
	}
	for _, s := range f.Products {
		out = append(out, scopedMeters{events.Scope{Product: s.Product, Env: s.Env}, s.Meters, s.Rules, s.Features, s.Quotas})
	}
	return out
}

// decodeRuleNode reads a rule from YAML through the same JSON shape as PUT /v1/rules, keeping
// numbers exactly as written (a YAML float would lose digits).
func decodeRuleNode(n yaml.Node) (RuleSpec, error) {
	var spec RuleSpec
	err := decodeNode(n, &spec)
	return spec, err
}

// decodeNode reads a YAML node into a JSON-tagged body type, strictly.
func decodeNode(n yaml.Node, v any) error {
	b, err := nodeJSON(&n)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// nodeJSON converts a YAML node to JSON, writing numeric scalars as their literal text.
func nodeJSON(n *yaml.Node) ([]byte, error) {
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return []byte("null"), nil
		}
		return nodeJSON(n.Content[0])
	case yaml.AliasNode:
		return nodeJSON(n.Alias)
	case yaml.MappingNode:
		var b bytes.Buffer
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b.WriteByte(',')
			}
			k, _ := json.Marshal(n.Content[i].Value)
			b.Write(k)
			b.WriteByte(':')
			v, err := nodeJSON(n.Content[i+1])
			if err != nil {
				return nil, err
			}
			b.Write(v)
		}
		b.WriteByte('}')
		return b.Bytes(), nil
	case yaml.SequenceNode:
		var b bytes.Buffer
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			v, err := nodeJSON(c)
			if err != nil {
				return nil, err
			}
			b.Write(v)
		}
		b.WriteByte(']')
		return b.Bytes(), nil
	default:
		switch n.Tag {
		case "!!int", "!!float":
			if _, err := events.ParseDecimal(n.Value); err != nil {
				return nil, fmt.Errorf("line %d: %q is not a decimal number", n.Line, n.Value)
			}
			return []byte(n.Value), nil
		case "!!bool":
			var v bool
			if err := n.Decode(&v); err != nil {
				return nil, err
			}
			return json.Marshal(v)
		case "!!null":
			return []byte("null"), nil
		default:
			return json.Marshal(n.Value)
		}
	}
}

// Bootstrap writes the file's keys and configuration as config events, skipping what the
// catalog already holds unchanged, so restarting with the same file changes nothing.
func Bootstrap(ctx context.Context, js jetstream.JetStream, cat *Catalog, f File, now time.Time) (written int, err error) {
	for i, k := range f.Keys {
		h := HashKey(k.Key)
		if have, ok := cat.HasKey(h); ok {
			want := Key{Scope: events.Scope{Product: k.Product, Env: k.Env}, Admin: k.Admin, Prefix: keyPrefix(k.Key)}
			if have == want {
				continue
			}
		}
		e := events.APIKeyCreated{Hash: h, Prefix: keyPrefix(k.Key), Product: k.Product, Env: k.Env, Admin: k.Admin, At: now.UTC()}
		if _, err := Publish(ctx, js, cat, events.ConfigSubject(k.Product, k.Env, events.KindAPIKey, h[:16]), events.TypeAPIKeyCreated, e); err != nil {
			return written, fmt.Errorf("bootstrapping keys[%d]: %w", i, err)
		}
		written++
	}
	for _, sm := range f.scopedMeters() {
		n, err := bootstrapScope(ctx, js, cat, sm, now)
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

func bootstrapScope(ctx context.Context, js jetstream.JetStream, cat *Catalog, sm scopedMeters, now time.Time) (written int, err error) {
	{
		keys := make([]string, 0, len(sm.meters))
		for k := range sm.meters {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, key := range keys {
			m, _ := ValidateMeter(sm.meters[key].Meter(key))
			n, err := PutMeter(ctx, js, cat, sm.scope, m, now)
			if err != nil {
				return written, fmt.Errorf("bootstrapping meter %s: %w", key, err)
			}
			written += n
		}
	}
	keys := make([]string, 0, len(sm.rules))
	for k := range sm.rules {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		spec, err := decodeRuleNode(sm.rules[key])
		if err != nil {
			return written, fmt.Errorf("rules.%s: %w", key, err)
		}
		r, fe := cat.ValidateRule(sm.scope, key, spec, now)
		if fe != nil {
			return written, fmt.Errorf("rules.%s.%s: %s", key, fe.Field, fe.Msg)
		}
		if _, err := PutRule(ctx, js, cat, sm.scope, r, now, true); err != nil {
			if errors.Is(err, ErrRuleUnchanged) {
				continue
			}
			return written, fmt.Errorf("bootstrapping rule %s: %w", key, err)
		}
		written++
	}
	for _, key := range sortedNodeKeys(sm.features) {
		var spec FeatureSpec
		decodeNode(sm.features[key], &spec)
		f, fe := cat.ValidateFeature(sm.scope, key, spec)
		if fe != nil {
			return written, fmt.Errorf("features.%s.%s: %s", key, fe.Field, fe.Msg)
		}
		n, err := PutFeature(ctx, js, cat, sm.scope, f, now)
		if err != nil {
			return written, fmt.Errorf("bootstrapping feature %s: %w", key, err)
		}
		written += n
	}
	for _, key := range sortedNodeKeys(sm.quotas) {
		var spec QuotaSpec
		decodeNode(sm.quotas[key], &spec)
		q, fe := cat.ValidateQuota(sm.scope, key, spec)
		if fe != nil {
			return written, fmt.Errorf("quotas.%s.%s: %s", key, fe.Field, fe.Msg)
		}
		n, err := PutQuota(ctx, js, cat, sm.scope, q, now)
		if err != nil {
			return written, fmt.Errorf("bootstrapping quota %s: %w", key, err)
		}
		written += n
	}
	return written, nil
}

func sortedNodeKeys(m map[string]yaml.Node) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// PutMeter stores a validated meter unless the catalog already holds the same definition.
// It returns 1 when it wrote a change.
func PutMeter(ctx context.Context, js jetstream.JetStream, cat *Catalog, sc events.Scope, m events.Meter, now time.Time) (int, error) {
	if have, ok := cat.Meter(sc, m.Key); ok && reflect.DeepEqual(have, m) {
		return 0, nil
	}
	e := events.MeterDefined{Product: sc.Product, Env: sc.Env, Meter: m, At: now.UTC()}
	if _, err := Publish(ctx, js, cat, events.ConfigSubject(sc.Product, sc.Env, events.KindMeter, m.Key), events.TypeMeterDefined, e); err != nil {
		return 0, err
	}
	return 1, nil
}

// keyPrefix is the part of a key safe to show in logs and listings: "ak_live_abcd".
func keyPrefix(key string) string {
	env, _ := KeyEnv(key)
	n := len("ak_") + len(env) + 1 + 4
	if n > len(key) {
		n = len(key)
	}
	return key[:n]
}
