package gateway

import (
	"crypto"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strings"
	"time"
)

// Identify names the caller a request counts against; ok is false when it cannot.
type Identify func(r *http.Request) (caller string, ok bool)

// ByHeader identifies callers by a header's value (an API key, a tenant id). From
// Authorization (named in any case) it takes a Bearer credential without its scheme, which is
// matched in any case as HTTP's schemes are: one key sent as "Bearer k" and "bearer k" is one
// caller, not two with a quota each.
func ByHeader(name string) Identify {
	authorization := strings.EqualFold(name, "Authorization")
	return func(r *http.Request) (string, bool) {
		v := strings.TrimSpace(r.Header.Get(name))
		if authorization {
			if scheme, cred, ok := strings.Cut(v, " "); ok && strings.EqualFold(scheme, "Bearer") {
				v = strings.TrimSpace(cred)
			}
		}
		return v, v != ""
	}
}

// Hashed identifies callers as id does, under "sha256-" and the first 32 hex digits of the
// SHA-256 of the identity: the customer id allot stores and shows (in ledgers, analytics and
// webhooks) is then not the identity itself, which with ByHeader("X-API-Key") is the caller's
// secret.
func Hashed(id Identify) Identify {
	return func(r *http.Request) (string, bool) {
		v, ok := id(r)
		if !ok {
			return "", false
		}
		sum := sha256.Sum256([]byte(v))
		return "sha256-" + hex.EncodeToString(sum[:16]), true
	}
}

// ByIP identifies callers by the client address of the connection.
func ByIP() Identify {
	return func(r *http.Request) (string, bool) {
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		return host, host != ""
	}
}

// JWTKey verifies token signatures: an HMAC secret (HS256) or an RSA public key (RS256).
type JWTKey struct {
	HMACSecret []byte
	RSAPublic  *rsa.PublicKey
}

// ErrJWT wraps every reason a token is refused.
var ErrJWT = errors.New("invalid token")

// ByJWTClaim identifies callers by a string claim (e.g. "sub") of a bearer JWT whose signature,
// exp and nbf are verified; unverified tokens identify nobody.
func ByJWTClaim(claim string, key JWTKey, now func() time.Time) Identify {
	if now == nil {
		now = time.Now
	}
	return func(r *http.Request) (string, bool) {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") { // schemes are case-insensitive (RFC 9110 §11.1)
			return "", false
		}
		claims, err := VerifyJWT(strings.TrimSpace(tok), key, now())
		if err != nil {
			return "", false
		}
		v, ok := claims[claim].(string)
		return v, ok && v != ""
	}
}

// VerifyJWT checks a compact JWS (HS256 or RS256, as the key allows) and its time claims, and
// returns its claims.
func VerifyJWT(token string, key JWTKey, now time.Time) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not a compact JWS", ErrJWT)
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrJWT, err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hb, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrJWT, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrJWT, err)
	}
	signed := []byte(parts[0] + "." + parts[1])
	switch {
	case hdr.Alg == "HS256" && key.HMACSecret != nil:
		m := hmac.New(sha256.New, key.HMACSecret)
		m.Write(signed)
		if subtle.ConstantTimeCompare(m.Sum(nil), sig) != 1 {
			return nil, fmt.Errorf("%w: bad signature", ErrJWT)
		}
	case hdr.Alg == "RS256" && key.RSAPublic != nil:
		sum := sha256.Sum256(signed)
		if err := rsa.VerifyPKCS1v15(key.RSAPublic, crypto.SHA256, sum[:], sig); err != nil {
			return nil, fmt.Errorf("%w: bad signature", ErrJWT)
		}
	default:
		// Never let the token choose a weaker algorithm than the key configured ("none",
		// HS256 signed with an RSA public key, …).
		return nil, fmt.Errorf("%w: algorithm %q not accepted", ErrJWT, hdr.Alg)
	}
	pb, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrJWT, err)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(string(pb)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrJWT, err)
	}
	// exp and nbf are NumericDates (RFC 7519 §2: seconds, fractions allowed); anything else
	// there is refused, never ignored — a token whose expiry cannot be read does not last.
	if v, ok := claims["exp"]; ok {
		exp, err := numericDate(v)
		if err != nil {
			return nil, fmt.Errorf("%w: exp: %v", ErrJWT, err)
		}
		if !now.Before(exp) {
			return nil, fmt.Errorf("%w: expired", ErrJWT)
		}
	}
	if v, ok := claims["nbf"]; ok {
		nbf, err := numericDate(v)
		if err != nil {
			return nil, fmt.Errorf("%w: nbf: %v", ErrJWT, err)
		}
		if now.Before(nbf) {
			return nil, fmt.Errorf("%w: not valid yet", ErrJWT)
		}
	}
	return claims, nil
}

// numericDate reads a JWT NumericDate: seconds since the epoch, fractions allowed.
func numericDate(v any) (time.Time, error) {
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, fmt.Errorf("%v is not a number of seconds", v)
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e15 {
		return time.Time{}, fmt.Errorf("%s is not a number of seconds", n)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), nil
}
