package gateway

import (
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func hs256(t *testing.T, secret string, claims map[string]any) string {
	t.Helper()
	head := b64(map[string]string{"alg": "HS256", "typ": "JWT"}) + "." + b64(claims)
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(head))
	return head + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func rs256(t *testing.T, k *rsa.PrivateKey, claims map[string]any) string {
	t.Helper()
	head := b64(map[string]string{"alg": "RS256", "typ": "JWT"}) + "." + b64(claims)
	sum := sha256.Sum256([]byte(head))
	sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
	require.NoError(t, err)
	return head + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestVerifyJWT(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := JWTKey{HMACSecret: []byte("s3cret")}
	c, err := VerifyJWT(hs256(t, "s3cret", map[string]any{"sub": "cust-1", "exp": now.Unix() + 60}), secret, now)
	require.NoError(t, err)
	assert.Equal(t, "cust-1", c["sub"])

	for name, tok := range map[string]string{
		"wrong secret": hs256(t, "other", map[string]any{"sub": "x"}),
		"expired":      hs256(t, "s3cret", map[string]any{"sub": "x", "exp": now.Unix() - 1}),
		"not yet":      hs256(t, "s3cret", map[string]any{"sub": "x", "nbf": now.Unix() + 10}),
		"alg none":     b64(map[string]string{"alg": "none"}) + "." + b64(map[string]any{"sub": "x"}) + ".",
		"garbage":      "a.b",
	} {
		_, err := VerifyJWT(tok, secret, now)
		assert.ErrorIs(t, err, ErrJWT, name)
	}

	k, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	rsKey := JWTKey{RSAPublic: &k.PublicKey}
	c, err = VerifyJWT(rs256(t, k, map[string]any{"sub": "cust-2"}), rsKey, now)
	require.NoError(t, err)
	assert.Equal(t, "cust-2", c["sub"])
	// An HS256 token must not pass against an RSA key (algorithm confusion).
	_, err = VerifyJWT(hs256(t, "anything", map[string]any{"sub": "x"}), rsKey, now)
	assert.ErrorIs(t, err, ErrJWT)
	other, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, err = VerifyJWT(rs256(t, other, map[string]any{"sub": "x"}), rsKey, now)
	assert.ErrorIs(t, err, ErrJWT)

	id := ByJWTClaim("sub", secret, func() time.Time { return now })
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+hs256(t, "s3cret", map[string]any{"sub": "cust-3"}))
	got, ok := id(r)
	assert.True(t, ok)
	assert.Equal(t, "cust-3", got)
	r.Header.Set("Authorization", "Bearer "+hs256(t, "nope", map[string]any{"sub": "cust-3"}))
	_, ok = id(r)
	assert.False(t, ok, "an unverified token identifies nobody")
}

func TestIdentifyByHeaderAndIP(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.1.2.3:5555"
	r.Header.Set("X-API-Key", "k1")
	v, ok := ByHeader("X-API-Key")(r)
	assert.True(t, ok)
	assert.Equal(t, "k1", v)
	_, ok = ByHeader("X-Other")(r)
	assert.False(t, ok)
	v, ok = ByIP()(r)
	assert.True(t, ok)
	assert.Equal(t, "10.1.2.3", v)

	// Hashed: the customer id is a hash of the key, the same for the same key, never the key.
	v, ok = Hashed(ByHeader("X-API-Key"))(r)
	assert.True(t, ok)
	assert.Equal(t, "sha256-6ab9f1eb8f7d3388f4f9d586f66e99fd", v) // echo -n k1 | sha256sum
	again, _ := Hashed(ByHeader("X-API-Key"))(r)
	assert.Equal(t, v, again)
	r.Header.Set("X-API-Key", "k2")
	other, _ := Hashed(ByHeader("X-API-Key"))(r)
	assert.NotEqual(t, v, other)
	_, ok = Hashed(ByHeader("X-Other"))(r)
	assert.False(t, ok, "no identity, no hash")
	// In a gateway config.
	id, err := IdentifyConfig{Header: "X-API-Key", Hashed: true}.build()
	require.NoError(t, err)
	fromConfig, _ := id(r)
	assert.Equal(t, other, fromConfig)
}

func TestCountFunc(t *testing.T) {
	f, err := CountFunc(nil)
	require.NoError(t, err)
	assert.True(t, f(200))
	assert.True(t, f(299))
	assert.False(t, f(300))
	assert.False(t, f(500))
	f, err = CountFunc([]string{"200-201", "404"})
	require.NoError(t, err)
	assert.True(t, f(201))
	assert.True(t, f(404))
	assert.False(t, f(202))
	for _, bad := range []string{"abc", "300-200", "99", "200-700"} {
		_, err := CountFunc([]string{bad})
		assert.Error(t, err, bad)
	}
}

func TestWithRemaining(t *testing.T) {
	for _, c := range []struct {
		in    string
		delta int64
		want  string
	}{
		{`"per-key";r=3;t=60`, -1, `"per-key";r=2;t=60`},
		{`"per-key";r=0;t=60`, -1, `"per-key";r=0;t=60`},
		{`"a";r=2;t=60, "b";r=0;t=5`, +1, `"a";r=3;t=60, "b";r=1;t=5`},
		{`"a";r=10`, -1, `"a";r=9`},
		{`"a";t=5`, +1, `"a";t=5`},
		{`"a";r=x;t=5`, +1, `"a";r=x;t=5`},
	} {
		if got := withRemaining(c.in, c.delta); got != c.want {
			t.Errorf("withRemaining(%s, %d) = %s, want %s", c.in, c.delta, got, c.want)
		}
	}
}

func TestCleanPath(t *testing.T) {
	for in, want := range map[string]string{
		"/api/ok": "/api/ok", "//api/ok": "/api/ok", "/public/../api/ok": "/api/ok", "/./api/": "/api/",
		"": "/", "api": "/api", "/..": "/", "/a//b/": "/a/b/",
	} {
		if got := cleanPath(in); got != want {
			t.Errorf("cleanPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// A route's prefix is a path: one without its leading / matched nothing, and the requests it
// was written for reached the upstream uncounted.
func TestRoutePrefixMustBeAPath(t *testing.T) {
	_, err := Proxy(Config{Upstream: "http://127.0.0.1:1", Allot: AllotConfig{URL: "http://127.0.0.1:2", Key: "k"},
		Routes: []RouteConfig{{Prefix: "v1/chat/", Identify: IdentifyConfig{Header: "X-K"}, Policies: []PolicyConfig{{Quota: "chat"}}}}}, nil)
	if err == nil || !strings.Contains(err.Error(), "routes[0]") {
		t.Fatalf("a prefix without its leading / was taken: %v", err)
	}
}
