package gateway

import (
	"bytes"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/allot-dev/allot/api/problem"
)

// Config is the file `allot gateway --config` reads.
type Config struct {
	Listen   string      `yaml:"listen"`
	Upstream string      `yaml:"upstream"`
	Allot    AllotConfig `yaml:"allot"`
	// CountStatus lists the upstream statuses that use quota: codes or ranges ("200-299").
	CountStatus []string      `yaml:"count_status"`
	Routes      []RouteConfig `yaml:"routes"`
}

// AllotConfig says where the allot server is.
type AllotConfig struct {
	URL string `yaml:"url"`
	Key string `yaml:"key"`
}

// RouteConfig applies ordered policies to every path under Prefix (the longest prefix wins).
type RouteConfig struct {
	Prefix   string         `yaml:"prefix"`
	Identify IdentifyConfig `yaml:"identify"`
	Policies []PolicyConfig `yaml:"policies"`
}

// IdentifyConfig chooses one way to name the caller.
type IdentifyConfig struct {
	Header             string `yaml:"header"`
	JWTClaim           string `yaml:"jwt_claim"`
	HS256Secret        string `yaml:"hs256_secret"`
	RS256PublicKeyFile string `yaml:"rs256_public_key_file"`
	IP                 bool   `yaml:"ip"`
	// Hashed counts the caller under a hash of its identity (Hashed): for an API key, so that
	// allot stores and shows a hash rather than the key.
	Hashed bool `yaml:"hashed"`
}

// PolicyConfig is one quota of a route.
type PolicyConfig struct {
	Quota    string `yaml:"quota"`
	FailOpen bool   `yaml:"fail_open"`
}

// LoadConfig reads and checks a gateway config file.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, err
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// CountFunc turns count_status into a predicate (default 200–299).
func CountFunc(specs []string) (func(int) bool, error) {
	if len(specs) == 0 {
		return func(s int) bool { return s >= 200 && s < 300 || s == 101 }, nil // as Middleware's default
	}
	type rng struct{ lo, hi int }
	var rs []rng
	for _, s := range specs {
		lo, hi, isRange := strings.Cut(s, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil || a < 100 || b > 599 || a > b {
			return nil, fmt.Errorf("count_status %q: want a status code or a range like 200-299", s)
		}
		rs = append(rs, rng{a, b})
	}
	return func(s int) bool {
		return slices.ContainsFunc(rs, func(r rng) bool { return s >= r.lo && s <= r.hi })
	}, nil
}

func (ic IdentifyConfig) build() (Identify, error) {
	id, err := ic.buildPlain()
	if err != nil || !ic.Hashed {
		return id, err
	}
	return Hashed(id), nil
}

func (ic IdentifyConfig) buildPlain() (Identify, error) {
	n := 0
	for _, set := range []bool{ic.Header != "", ic.JWTClaim != "", ic.IP} {
		if set {
			n++
		}
	}
	if n != 1 {
		return nil, fmt.Errorf("identify: set exactly one of header, jwt_claim, ip")
	}
	switch {
	case ic.Header != "":
		return ByHeader(ic.Header), nil
	case ic.IP:
		return ByIP(), nil
	}
	var key JWTKey
	if ic.HS256Secret != "" {
		key.HMACSecret = []byte(ic.HS256Secret)
	}
	if ic.RS256PublicKeyFile != "" {
		pub, err := readRSAPublicKey(ic.RS256PublicKeyFile)
		if err != nil {
			return nil, err
		}
		key.RSAPublic = pub
	}
	if key.HMACSecret == nil && key.RSAPublic == nil {
		return nil, fmt.Errorf("identify: jwt_claim needs hs256_secret or rs256_public_key_file")
	}
	return ByJWTClaim(ic.JWTClaim, key, nil), nil
}

func readRSAPublicKey(path string) (*rsa.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s: not an RSA public key", path)
	}
	return pub, nil
}

// Proxy builds the gateway: a reverse proxy to the upstream with each route's policies.
func Proxy(c Config, onError func(error)) (http.Handler, error) {
	up, err := url.Parse(c.Upstream)
	if err != nil || up.Scheme == "" || up.Host == "" {
		return nil, fmt.Errorf("upstream %q: want an absolute URL", c.Upstream)
	}
	if c.Allot.URL == "" || c.Allot.Key == "" {
		return nil, fmt.Errorf("allot: url and key are required")
	}
	count, err := CountFunc(c.CountStatus)
	if err != nil {
		return nil, err
	}
	rp := httputil.NewSingleHostReverseProxy(up)
	rp.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		writeProblem(w, http.StatusBadGateway, problem.BadGateway, "the upstream did not answer", 0)
	}
	client := &Client{BaseURL: c.Allot.URL, APIKey: c.Allot.Key, HTTP: &http.Client{Timeout: 2 * time.Second}}
	type route struct {
		prefix string
		h      http.Handler
	}
	var routes []route
	for i, rc := range c.Routes {
		if !strings.HasPrefix(rc.Prefix, "/") {
			// Paths start with /: "v1/chat/" matched nothing, and its requests reached the
			// upstream uncounted.
			return nil, fmt.Errorf("routes[%d]: prefix %q must start with /", i, rc.Prefix)
		}
		id, err := rc.Identify.build()
		if err != nil {
			return nil, fmt.Errorf("routes[%d]: %w", i, err)
		}
		var ps []Policy
		for _, p := range rc.Policies {
			if p.Quota == "" {
				return nil, fmt.Errorf("routes[%d]: a policy needs a quota", i)
			}
			ps = append(ps, Policy{Quota: p.Quota, FailOpen: p.FailOpen})
		}
		routes = append(routes, route{rc.Prefix, Middleware(Options{Client: client, Identify: id, Policies: ps, Count: count, OnError: onError})(rp)})
	}
	slices.SortStableFunc(routes, func(a, b route) int { return len(b.prefix) - len(a.prefix) })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Routes match the cleaned path, and the upstream gets that path: `//api/x` or
		// `/public/../api/x` would otherwise miss /api/'s policies and reach an upstream that
		// cleans paths itself.
		if p := cleanPath(r.URL.Path); p != r.URL.Path {
			r.URL.Path, r.URL.RawPath = p, ""
		}
		for _, rt := range routes {
			if routeMatches(r.URL.Path, rt.prefix) {
				rt.h.ServeHTTP(w, r)
				return
			}
		}
		rp.ServeHTTP(w, r) // no policy covers the path
	}), nil
}

// routeMatches reports whether a route's prefix covers path. Letter case is ignored (many
// upstreams route case-insensitively, and /API/x must not skip /api/'s policies: a policy
// applied to a path an upstream tells apart by case is the safe mistake), and a prefix ending
// in a slash covers the path without it (/api for /api/).
func routeMatches(path, prefix string) bool {
	if len(path) >= len(prefix) && strings.EqualFold(path[:len(prefix)], prefix) {
		return true
	}
	return strings.HasSuffix(prefix, "/") && len(prefix) > 1 && strings.EqualFold(path, prefix[:len(prefix)-1])
}

// cleanPath is p without empty, "." and ".." elements, rooted, keeping a trailing slash (as
// net/http's ServeMux cleans paths).
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}
