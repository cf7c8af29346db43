package events

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Subject scheme. Every subject starts with "allot" and names its stream's kind, then the
// product and env that own the message, so a NATS permission on "allot.*.acme.live.>" is a
// tenant boundary.
//
//	usage (published)  allot.usage.<product>.<env>.<customer>
//	usage (stored)     allot.usage.<partition>.<product>.<env>.<customer>
//	ledger             allot.ledger.<product>.<env>.<customer>
//	config             allot.config.<product>.<env>.<kind>.<key>
//
// The usage stream rewrites the published subject on the way in (a stream subject transform
// with the server's deterministic partition function over the product, env and customer
// tokens), so producers never compute partitions and a customer's events always land in the
// same partition, in order. The partition comes first in the stored form so that a
// partition's consumer filter is a literal prefix (allot.usage.3.>), which the server matches
// without walking every customer's subject.
const (
	SubjectRoot  = "allot"
	UsagePrefix  = "allot.usage"
	LedgerPrefix = "allot.ledger"
	ConfigPrefix = "allot.config"
)

// Header names carried by allot's messages.
const (
	HeaderMsgID     = "Nats-Msg-Id"      // JetStream dedup key
	HeaderType      = "Allot-Type"       // versioned event name, e.g. usage.recorded.v1
	HeaderEventHash = "Allot-Event-Hash" // hash of a usage event as sent, to tell a retry from a conflicting reuse of an id
	HeaderCommand   = "Allot-Command"    // id of the API command (from its Idempotency-Key) a ledger entry carries out
)

// ErrBadScope is returned for product tags and env names that are not subject-safe.
var ErrBadScope = errors.New("must match ^[a-z0-9][a-z0-9_-]{0,62}$")

// ValidateScope checks a product tag or env name: ^[a-z0-9][a-z0-9_-]{0,62}$, checked by hand
// (every authenticated request checks its key's env, and the regexp was 6% of a check's CPU).
func ValidateScope(s string) error {
	if !scopeTokenOK(s) {
		return fmt.Errorf("%q: %w", truncate(s, 40), ErrBadScope)
	}
	return nil
}

func scopeTokenOK(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Token makes an arbitrary identifier (a customer's external id, a config key) safe to use as
// one subject token, reversibly: ASCII letters, digits, '_' and '-' stay as they are; every
// other byte becomes '~' and two lower-case hex digits. "cust_42" stays "cust_42";
// "a.b@c" becomes "a~2eb~40c". The empty string becomes "~".
func Token(id string) string {
	if id == "" {
		return "~"
	}
	safe := true
	for i := 0; i < len(id); i++ {
		if !tokenSafe(id[i]) {
			safe = false
			break
		}
	}
	if safe {
		return id
	}
	const hex = "0123456789abcdef"
	var b strings.Builder
	b.Grow(len(id) + 8)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if tokenSafe(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('~')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

// ParseToken reverses Token.
func ParseToken(tok string) (string, error) {
	if tok == "~" {
		return "", nil
	}
	if !strings.Contains(tok, "~") {
		for i := 0; i < len(tok); i++ {
			if !tokenSafe(tok[i]) {
				return "", fmt.Errorf("subject token %q: byte %d is not subject-safe", truncate(tok, 40), i)
			}
		}
		return tok, nil
	}
	var b strings.Builder
	for i := 0; i < len(tok); i++ {
		c := tok[i]
		switch {
		case tokenSafe(c):
			b.WriteByte(c)
		case c == '~' && i+2 < len(tok):
			v, err := strconv.ParseUint(tok[i+1:i+3], 16, 8)
			if err != nil || tok[i+1:i+3] != strings.ToLower(tok[i+1:i+3]) {
				return "", fmt.Errorf("subject token %q: bad escape at %d", truncate(tok, 40), i)
			}
			b.WriteByte(byte(v))
			i += 2
		default:
			return "", fmt.Errorf("subject token %q: bad byte at %d", truncate(tok, 40), i)
		}
	}
	return b.String(), nil
}

func tokenSafe(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// UsageSubject is the subject a usage event for customer is published on.
func UsageSubject(product, env, customer string) string {
	return UsagePrefix + "." + product + "." + env + "." + Token(customer)
}

// UsagePartitionFilter is the consumer filter for one partition of the usage stream.
func UsagePartitionFilter(partition int) string {
	return UsagePrefix + "." + strconv.Itoa(partition) + ".>"
}

// UsageAddress is what a stored usage subject says.
type UsageAddress struct {
	Product, Env, Customer string
	Partition              int // -1 when the subject carries none (published form)
}

// ParseUsageSubject reads a usage subject in its published or stored form.
func ParseUsageSubject(subject string) (UsageAddress, error) {
	// Tokens into an array, not a Split: rating and the sink parse every usage message's subject.
	var parts [6]string
	n := 0
	for rest := subject; ; {
		if n == len(parts) {
			return UsageAddress{}, fmt.Errorf("not a usage subject: %q", truncate(subject, 80))
		}
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			parts[n] = rest
			n++
			break
		}
		parts[n], rest = rest[:i], rest[i+1:]
		n++
	}
	if n < 5 || parts[0] != "allot" || parts[1] != "usage" {
		return UsageAddress{}, fmt.Errorf("not a usage subject: %q", truncate(subject, 80))
	}
	partition, p := -1, parts[2:n]
	if n == 6 {
		v, err := strconv.Atoi(parts[2])
		if err != nil || v < 0 {
			return UsageAddress{}, fmt.Errorf("usage subject %q: bad partition", truncate(subject, 80))
		}
		partition, p = v, parts[3:n]
	}
	cust, err := ParseToken(p[2])
	if err != nil {
		return UsageAddress{}, err
	}
	return UsageAddress{Product: p[0], Env: p[1], Customer: cust, Partition: partition}, nil
}

// LedgerSubject is the per-customer ledger subject. Commands decided on a customer's state are
// appended here with an expected last subject sequence, which is what makes them
// linearizable per customer.
func LedgerSubject(product, env, customer string) string {
	return LedgerPrefix + "." + product + "." + env + "." + Token(customer)
}

// ConfigSubject is the subject of one configuration object's history.
func ConfigSubject(product, env, kind, key string) string {
	return ConfigPrefix + "." + product + "." + env + "." + kind + "." + Token(key)
}

// UsageMsgID is the JetStream dedup key of a usage event: the event id scoped by product and
// env, so two tenants using the same id never suppress each other's events.
func UsageMsgID(product, env, eventID string) string {
	return product + ":" + env + ":" + eventID
}

// Scope is the (product, env) that owns a piece of state.
type Scope struct {
	Product string `json:"product"`
	Env     string `json:"env"`
}

func (s Scope) String() string { return s.Product + "/" + s.Env }

// QuotaLane is the quota lane, of lanes, of a customer's quota commands. Every quota command
// of a customer (increment, reset, adjustment) is appended to its lane's subject with an
// expected last subject sequence, so commands are linearizable per lane and so per customer,
// and one entry can carry the increments of many customers (group commit across customers).
// The number of lanes is a contract of the ledger's layout, fixed when the ledger stream is
// created (bus.QuotaLanes): a customer's lane must never change while any process writes.
func QuotaLane(customer string, lanes int) int {
	if lanes <= 1 {
		return 0
	}
	h := uint32(2166136261)
	for i := 0; i < len(customer); i++ {
		h = (h ^ uint32(customer[i])) * 16777619
	}
	return int(h % uint32(lanes))
}

// quotaLanePrefix starts a lane's subject token: '~' followed by a letter is an escape Token
// never writes, so no customer's token is a lane's.
const quotaLanePrefix = "~q"

// QuotaLaneSubject is the ledger subject of one quota lane of a product and env.
func QuotaLaneSubject(product, env string, lane int) string {
	return LedgerPrefix + "." + product + "." + env + "." + QuotaLaneToken(lane)
}

// QuotaLaneToken is the last token of a quota lane's subject (LedgerAddress.Lane).
func QuotaLaneToken(lane int) string { return quotaLanePrefix + strconv.Itoa(lane) }

// LedgerAddress is what a ledger subject says: a customer's subject, or a quota lane's (Lane
// is its token, "~q0"; Customer is then empty and each item of an entry names its customer).
type LedgerAddress struct{ Product, Env, Customer, Lane string }

// ParseLedgerSubject reads allot.ledger.<product>.<env>.<customer> or a quota lane's subject.
func ParseLedgerSubject(subject string) (LedgerAddress, error) {
	// Cut rather than Split: every ledger entry folded goes through here.
	rest, ok := strings.CutPrefix(subject, "allot.ledger.")
	product, rest, ok2 := strings.Cut(rest, ".")
	env, tok, ok3 := strings.Cut(rest, ".")
	if !ok || !ok2 || !ok3 || strings.Contains(tok, ".") {
		return LedgerAddress{}, fmt.Errorf("not a ledger subject: %q", truncate(subject, 80))
	}
	if lane, ok := strings.CutPrefix(tok, quotaLanePrefix); ok {
		if n, err := strconv.Atoi(lane); err != nil || n < 0 || strconv.Itoa(n) != lane {
			return LedgerAddress{}, fmt.Errorf("ledger subject %q: bad quota lane", truncate(subject, 80))
		}
		return LedgerAddress{Product: product, Env: env, Lane: tok}, nil
	}
	cust, err := ParseToken(tok)
	if err != nil {
		return LedgerAddress{}, err
	}
	return LedgerAddress{Product: product, Env: env, Customer: cust}, nil
}

// MaxCustomerLen is the longest customer id allot takes, in bytes, wherever one comes in (an
// event, a path, a body). A customer's id is a token of its ledger and usage subjects — up to
// three bytes a byte once escaped (Token) — and NATS closes a connection that publishes a
// subject past its control line (4 KiB by default): for the embedded server's in-process
// connection, for good.
const MaxCustomerLen = 256

// customerNamespace is the UUIDv5 namespace of allot customer ids. A contract: changing it
// would change every customer's id.
var customerNamespace = [16]byte{0x6b, 0xa7, 0xb8, 0x14, 0x9d, 0xad, 0x41, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8}

// CustomerID is allot's UUID for a customer: the UUIDv5 of (product, env, external id). It is
// derived, so any process can compute it without coordination, and stable forever.
func CustomerID(scope Scope, external string) string {
	h := sha1.New()
	h.Write(customerNamespace[:])
	h.Write([]byte(scope.Product + "\x00" + scope.Env + "\x00" + external))
	sum := h.Sum(nil)
	var u [16]byte
	copy(u[:], sum[:16])
	u[6] = (u[6] & 0x0f) | 0x50 // version 5
	u[8] = (u[8] & 0x3f) | 0x80 // RFC 4122 variant
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// LooksLikeCustomerID reports whether id has the form of allot's customer UUIDs (version 5,
// RFC 4122 variant, lower-case hex), which the ledger maps back to external ids.
func LooksLikeCustomerID(id string) bool {
	if len(id) != 36 || id[14] != '5' || !strings.ContainsRune("89ab", rune(id[19])) {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case i == 8 || i == 13 || i == 18 || i == 23:
			if c != '-' {
				return false
			}
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		default:
			return false
		}
	}
	return true
}
