package projector

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/bits"
	"strconv"
	"time"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/internal/plainjson"
)

// ratedFold is the part of a usage.rated.v1 entry the fold reads. Decimal quantities, ids and
// names are left undecoded: they are for auditors and analytics, not for balances.
type ratedFold struct {
	Debits  []ratedDebit      `json:"debits"`
	Unrated []ratedUnrated    `json:"unrated"`
	Quotas  []events.QuotaUse `json:"quotas"`
}

// ratedUnrated: an unrated event only advances the customer's usage position.
type ratedUnrated struct {
	UsageSeq uint64 `json:"usage_seq"`
}

type ratedDebit struct {
	UsageSeq  uint64         `json:"usage_seq"`
	RuleIndex int            `json:"rule_index"`
	Rule      ruleKey        `json:"rule"`
	Amount    events.Credits `json:"amount"`
	EventTime time.Time      `json:"event_time"`
}

// ruleKey is a debit's rule key as the fold keeps it: a 64-bit FNV-1a hash of the key's text,
// so telling which rules an event was already charged for costs eight bytes a rule and no
// allocation. 0 means none was given (no key, or an empty one).
type ruleKey uint64

func hashRuleKey(b []byte) ruleKey {
	if len(b) == 0 {
		return 0
	}
	return ruleKey(fnv1a(b))
}

// fnv1a is the 64-bit FNV-1a hash of s with its lowest bit set, so it is never 0.
func fnv1a[S string | []byte](s S) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h | 1
}

func (k *ruleKey) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	*k = hashRuleKey([]byte(s))
	return nil
}

// decodeRatedFold decodes what the fold needs of a usage.rated.v1 entry. It is the hottest
// decode in allot (every replay and every live debit goes through it) and encoding/json spends
// most of its time validating and matching fields the fold then ignores, so the canonical form
// allot's rating workers write is walked by hand. Anything outside that form — a key that is
// not exactly one of the entry's field names (encoding/json matches keys case-insensitively), an
// escape inside a key, null, a number that is not a plain integer — goes to encoding/json, so
// both paths give the same result for every input. Values are decoded by the types' own
// UnmarshalJSON, so amounts and times are parsed exactly as elsewhere.
func decodeRatedFold(data []byte) (ratedFold, error) {
	var r ratedFold
	err := decodeRatedFoldInto(&r, data)
	return r, err
}

// decodeRatedFoldInto is decodeRatedFold into r, reusing its slices' memory: the projection
// decodes every entry into one scratch value.
func decodeRatedFoldInto(r *ratedFold, data []byte) error {
	r.Debits, r.Unrated, r.Quotas = r.Debits[:0], r.Unrated[:0], nil
	d := ratedDecoder{b: data}
	if err := d.entry(r); err == nil {
		return nil
	}
	*r = ratedFold{}
	return json.Unmarshal(data, r)
}

// errSlowPath sends a decode to encoding/json. It never reaches a caller.
var errSlowPath = errors.New("not in canonical form")

type ratedDecoder struct {
	b     []byte
	i     int
	depth int // of skipped values; deep ones go to encoding/json, which has its own limit
}

// maxSkipDepth is far deeper than any entry allot writes and far shallower than encoding/json's
// nesting limit, so a document the fast path accepts is never one encoding/json rejects.
const maxSkipDepth = 64

func (d *ratedDecoder) ws() {
	if d.i < len(d.b) && d.b[d.i] > ' ' {
		return // allot writes no whitespace
	}
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// next skips whitespace and consumes c.
func (d *ratedDecoder) next(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// member moves to the next member of an object whose '{' is consumed: it reads the key
// (without escapes) and its colon, or reports the end of the object.
func (d *ratedDecoder) member(first bool) (key []byte, more bool, err error) {
	if d.next('}') {
		return nil, false, nil
	}
	if !first && !d.next(',') {
		return nil, false, errSlowPath
	}
	if !d.next('"') {
		return nil, false, errSlowPath
	}
	start := d.i
	d.i = plainjson.SkipPlain(d.b, d.i)
	for d.i < len(d.b) {
		switch c := d.b[d.i]; {
		case c == '"':
			k := d.b[start:d.i]
			d.i++
			if !d.next(':') {
				return nil, false, errSlowPath
			}
			return k, true, nil
		case c == '\\' || c < 0x20:
			return nil, false, errSlowPath
		}
		d.i++
	}
	return nil, false, errSlowPath
}

// element moves to the next element of an array whose '[' is consumed, or reports its end.
func (d *ratedDecoder) element(first bool) (more bool, err error) {
	if d.next(']') {
		return false, nil
	}
	if !first && !d.next(',') {
		return false, errSlowPath
	}
	return true, nil
}

// value returns the raw bytes of the next value, checking that it is valid JSON.
func (d *ratedDecoder) value() ([]byte, error) {
	d.ws()
	start := d.i
	if d.i >= len(d.b) {
		return nil, errSlowPath
	}
	switch c := d.b[d.i]; {
	case c == '"':
		d.i++
		// Eight bytes at a time up to the first that needs a look: most of an entry's bytes
		// are string contents the fold skips.
		for d.i < len(d.b) {
			d.i = plainjson.SkipPlain(d.b, d.i)
			if d.i >= len(d.b) {
				break
			}
			switch c := d.b[d.i]; {
			case c == '"':
				d.i++
				return d.b[start:d.i], nil
			case c == '\\':
				if !d.escape() {
					return nil, errSlowPath
				}
				continue
			case c < 0x20:
				return nil, errSlowPath
			}
			d.i++
		}
		return nil, errSlowPath
	case c == '{' || c == '[':
		if d.depth++; d.depth > maxSkipDepth {
			return nil, errSlowPath
		}
		err := d.container(c == '{')
		d.depth--
		if err != nil {
			return nil, err
		}
		return d.b[start:d.i], nil
	case c == '-' || (c >= '0' && c <= '9'):
		end, ok := plainjson.NumberEnd(d.b, d.i)
		if !ok {
			return nil, errSlowPath
		}
		d.i = end
		return d.b[start:d.i], nil
	case c == 't' || c == 'f':
		for d.i < len(d.b) && d.b[d.i] >= 'a' && d.b[d.i] <= 'z' {
			d.i++
		}
		if s := string(d.b[start:d.i]); s != "true" && s != "false" {
			return nil, errSlowPath
		}
		return d.b[start:d.i], nil
	}
	// null (which encoding/json treats as "leave as is") and anything else.
	return nil, errSlowPath
}

// container skips the members of an object, or the elements of an array, whose opening
// bracket is next.
func (d *ratedDecoder) container(object bool) error {
	d.i++
	for first := true; ; first = false {
		var more bool
		var err error
		if object {
			_, more, err = d.member(first)
		} else {
			more, err = d.element(first)
		}
		if err != nil || !more {
			return err
		}
		if _, err := d.value(); err != nil {
			return err
		}
	}
}

// escape consumes one escape sequence of a string, as JSON defines them.
func (d *ratedDecoder) escape() bool {
	if d.i+1 >= len(d.b) {
		return false
	}
	switch d.b[d.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		d.i += 2
		return true
	case 'u':
		if d.i+6 > len(d.b) {
			return false
		}
		for _, h := range d.b[d.i+2 : d.i+6] {
			if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
				return false
			}
		}
		d.i += 6
		return true
	}
	return false
}

func (d *ratedDecoder) uint() (uint64, error) {
	v, err := d.value()
	if err != nil || len(v) == 0 || v[0] < '0' || v[0] > '9' {
		return 0, errSlowPath
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, errSlowPath
	}
	return n, nil
}

func (d *ratedDecoder) entry(r *ratedFold) error {
	// The members the fold skips, as the rating worker writes them, in one straight pass.
	first := true
	if i := d.headCanonical(); i > 0 {
		d.i, first = i, false
	} else if !d.next('{') {
		return errSlowPath
	}
	var seenDebits, seenUnrated, seenQuotas bool // a repeated key is left to encoding/json's rules
	for ; ; first = false {
		k, more, err := d.member(first)
		if err != nil {
			return err
		}
		if !more {
			break
		}
		switch string(k) {
		case "debits":
			if seenDebits || !d.next('[') {
				return errSlowPath
			}
			seenDebits = true
			if r.Debits == nil {
				r.Debits = make([]ratedDebit, 0, 8)
			}
			for first := true; ; first = false {
				more := false
				if !first && d.byteIs(',') { // as the rating worker writes them
					more = true
				} else if more, err = d.element(first); err != nil {
					return err
				}
				if !more {
					break
				}
				r.Debits = append(r.Debits, ratedDebit{})
				if err := d.debit(&r.Debits[len(r.Debits)-1]); err != nil {
					return err
				}
			}
		case "unrated":
			if seenUnrated || !d.next('[') {
				return errSlowPath
			}
			seenUnrated = true
			if r.Unrated == nil {
				r.Unrated = []ratedUnrated{}
			}
			for first := true; ; first = false {
				more, err := d.element(first)
				if err != nil {
					return err
				}
				if !more {
					break
				}
				seq, err := d.unrated()
				if err != nil {
					return err
				}
				r.Unrated = append(r.Unrated, ratedUnrated{seq})
			}
		case "quotas":
			// Rarer, and its periods and decimals are needed whole: encoding/json.
			v, err := d.value()
			if seenQuotas || err != nil || v[0] != '[' || json.Unmarshal(v, &r.Quotas) != nil {
				return errSlowPath
			}
			seenQuotas = true
		case "id", "customer", "first_seq", "last_seq":
			if _, err := d.value(); err != nil {
				return err
			}
		default:
			return errSlowPath
		}
	}
	if d.ws(); d.i != len(d.b) {
		return errSlowPath
	}
	return nil
}

func (d *ratedDecoder) unrated() (seq uint64, err error) {
	if !d.next('{') {
		return 0, errSlowPath
	}
	for first := true; ; first = false {
		k, more, err := d.member(first)
		if err != nil || !more {
			return seq, err
		}
		switch string(k) {
		case "usage_seq":
			if seq, err = d.uint(); err != nil {
				return 0, err
			}
		case "id", "customer", "event_id", "event_type", "meters", "reasons", "event_time":
			if _, err := d.value(); err != nil {
				return 0, err
			}
		default:
			return 0, errSlowPath
		}
	}
}

func (d *ratedDecoder) debit(x *ratedDebit) error {
	if d.debitCanonical(x) || d.debitInOrder(x) {
		return nil
	}
	if !d.next('{') {
		return errSlowPath
	}
	for first := true; ; first = false {
		k, more, err := d.member(first)
		if err != nil || !more {
			return err
		}
		i := debitKeyIndex(k)
		if i < 0 {
			return errSlowPath
		}
		if err := d.debitField(i, x); err != nil {
			return err
		}
	}
}

// debitKeyIndex is the index in debitKeys of a debit item's key, -1 for one it does not have.
func debitKeyIndex(k []byte) int {
	for i := range debitKeys {
		if debitKeys[i].name == string(k) {
			return i
		}
	}
	return -1
}

// debitKeys are a debit item's keys in the order UsageDebited.appendJSON writes them, quoted
// and with their colon.
var debitKeys = [...]struct {
	name, lit string
	word      keyWords
}{
	{name: "id", lit: `"id":`}, {name: "kind", lit: `"kind":`}, {name: "customer", lit: `"customer":`}, {name: "event_id", lit: `"event_id":`}, {name: "rule", lit: `"rule":`},
	{name: "rule_version", lit: `"rule_version":`}, {name: "quantity", lit: `"quantity":`}, {name: "amount", lit: `"amount":`}, {name: "allocations", lit: `"allocations":`},
	{name: "event_time", lit: `"event_time":`}, {name: "usage_seq", lit: `"usage_seq":`}, {name: "rule_index", lit: `"rule_index":`},
	{name: "period_start", lit: `"period_start":`}, {name: "period_quantity", lit: `"period_quantity":`},
}

func init() {
	for i := range debitKeys {
		debitKeys[i].word = keyWordsOf(debitKeys[i].lit)
	}
	for want, i := range map[string]int{"rule": debitKeyRule, "amount": debitKeyAmount, "event_time": debitKeyEventTime, "usage_seq": debitKeyUsageSeq, "rule_index": debitKeyRuleIndex} {
		if debitKeys[i].name != want {
			panic("debitKeys and its index constants disagree on " + want)
		}
	}
}

// keyWords is a quoted key with its colon as little-endian 8-byte words and the masks of the
// bytes it has in each, so matching it against the input is up to three word comparisons.
type keyWords struct {
	lit  string
	n    int
	w, m [3]uint64
}

func keyWordsOf(lit string) keyWords {
	if len(lit) > 24 {
		panic("key literal longer than 24 bytes: " + lit)
	}
	k := keyWords{lit: lit, n: len(lit)}
	for i := 0; i < len(lit); i++ {
		k.w[i/8] |= uint64(lit[i]) << (8 * (i % 8))
		k.m[i/8] |= 0xff << (8 * (i % 8))
	}
	return k
}

// byteIs consumes c if it is the next byte.
func (d *ratedDecoder) byteIs(c byte) bool {
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// debitInOrder reads a debit item written as allot writes them — no whitespace, known keys in
// debitKeys order (any may be missing), each once — matching each key by its bytes instead of
// scanning and switching. Anything else leaves the decoder where it was and reports false, for
// the general walk.
func (d *ratedDecoder) debitInOrder(x *ratedDebit) bool {
	start := d.i
	if !d.byteIs('{') {
		return false
	}
	next := 0
	for first := true; ; first = false {
		if d.byteIs('}') {
			return true
		}
		if !first && !d.byteIs(',') {
			break
		}
		found := false
		for next < len(debitKeys) && !found {
			k := &debitKeys[next]
			next++
			if j := k.word.after(d.b, d.i); j >= 0 {
				d.i = j
				if d.debitField(next-1, x) != nil {
					d.i, *x = start, ratedDebit{}
					return false
				}
				found = true
			}
		}
		if !found {
			break
		}
	}
	d.i, *x = start, ratedDebit{}
	return false
}

// The indexes in debitKeys of the members the fold reads.
const (
	debitKeyRule      = 4
	debitKeyAmount    = 7
	debitKeyEventTime = 9
	debitKeyUsageSeq  = 10
	debitKeyRuleIndex = 11
)

// debitField reads the value of a debit item's member debitKeys[key]: an index, so telling the
// members apart costs no string comparison.
func (d *ratedDecoder) debitField(key int, x *ratedDebit) error {
	switch key {
	case debitKeyUsageSeq:
		n, err := d.uint()
		if err != nil {
			return err
		}
		x.UsageSeq = n
	case debitKeyRuleIndex:
		n, err := d.uint()
		if err != nil || n > 1<<31 {
			return errSlowPath
		}
		x.RuleIndex = int(n)
	case debitKeyAmount:
		v, err := d.value()
		if err != nil || x.Amount.UnmarshalJSON(v) != nil {
			return errSlowPath
		}
	case debitKeyEventTime:
		v, err := d.value()
		if err != nil || v[0] != '"' {
			return errSlowPath
		}
		if t, ok := plainjson.Time(v); ok {
			x.EventTime = t
		} else if x.EventTime.UnmarshalJSON(v) != nil {
			return errSlowPath
		}
	case debitKeyRule:
		v, err := d.value()
		if err != nil || len(v) < 2 || v[0] != '"' {
			return errSlowPath // null: UnmarshalJSON decides
		}
		for _, c := range v[1 : len(v)-1] {
			if c == '\\' || c < 0x20 || c >= 0x80 {
				return errSlowPath // escapes or non-ASCII: hashed as encoding/json decodes them
			}
		}
		x.Rule = hashRuleKey(v[1 : len(v)-1])
	default: // id, kind, customer, event_id, rule_version, quantity, allocations, period_start, period_quantity
		if _, err := d.value(); err != nil {
			return err
		}
	}
	return nil
}

// The keys of a debit item as UsageDebited.appendJSON writes them, each with the byte before
// it, for debitCanonical.
var (
	keyID             = keyWordsOf(`{"id":`)
	keyKind           = keyWordsOf(`,"kind":`)
	keyCustomer       = keyWordsOf(`,"customer":`)
	keyEventID        = keyWordsOf(`,"event_id":`)
	keyRule           = keyWordsOf(`,"rule":`)
	keyRuleVersion    = keyWordsOf(`,"rule_version":`)
	keyQuantity       = keyWordsOf(`,"quantity":`)
	keyAmount         = keyWordsOf(`,"amount":`)
	keyAllocations    = keyWordsOf(`,"allocations":`)
	keyEventTime      = keyWordsOf(`,"event_time":`)
	keyUsageSeq       = keyWordsOf(`,"usage_seq":`)
	keyRuleIndex      = keyWordsOf(`,"rule_index":`)
	keyPeriodStart    = keyWordsOf(`,"period_start":`)
	keyPeriodQuantity = keyWordsOf(`,"period_quantity":`)
)

// debitCanonical reads a debit item exactly as UsageDebited.appendJSON writes it — every key
// in its place, with the byte before it, strings without escapes, integers that fit 19 digits —
// in one straight pass. It is debitInOrder without the search for each next key and the calls
// per value: a replay is bound by this decode (the rest is reading the stream), and nearly every
// item it meets has this form. Anything else reports false and leaves d as it was, for
// debitInOrder and the general walk.
func (d *ratedDecoder) debitCanonical(x *ratedDebit) bool {
	b, start, i := d.b, d.i, d.i
	var s int
	if i = keyID.after(b, i); i < 0 {
		return false
	}
	if i = plainStringEnd(b, i); i < 0 {
		return false
	}
	if i = keyKind.after(b, i); i < 0 {
		return false
	}
	if i = plainStringEnd(b, i); i < 0 {
		return false
	}
	if i = keyCustomer.after(b, i); i < 0 {
		return false
	}
	if i = plainStringEnd(b, i); i < 0 {
		return false
	}
	if i = keyEventID.after(b, i); i < 0 {
		return false
	}
	if i = plainStringEnd(b, i); i < 0 {
		return false
	}
	if i = keyRule.after(b, i); i < 0 {
		return false
	}
	if s, i = i, plainStringEnd(b, i); i < 0 {
		return false
	}
	rule := b[s+1 : i-1]
	for _, c := range rule {
		if c >= 0x80 {
			return false // hashed as encoding/json decodes it, invalid UTF-8 replaced
		}
	}
	if i = keyRuleVersion.after(b, i); i < 0 {
		return false
	}
	if _, i = plainUint(b, i); i < 0 {
		return false
	}
	if i = keyQuantity.after(b, i); i < 0 {
		return false
	}
	if i = plainStringEnd(b, i); i < 0 {
		return false
	}
	if i = keyAmount.after(b, i); i < 0 {
		return false
	}
	if s, i = i, plainStringEnd(b, i); i < 0 {
		return false
	}
	var amount events.Credits
	if amount.UnmarshalJSON(b[s:i]) != nil {
		return false
	}
	if j := keyAllocations.after(b, i); j >= 0 {
		// Only the fold's own credit-backs carry allocations: the general skip.
		d.i = j
		_, err := d.value()
		i, d.i = d.i, start
		if err != nil {
			return false
		}
	}
	if i = keyEventTime.after(b, i); i < 0 {
		return false
	}
	if s, i = i, plainStringEnd(b, i); i < 0 {
		return false
	}
	at, ok := plainjson.Time(b[s:i])
	if !ok {
		return false
	}
	if i = keyUsageSeq.after(b, i); i < 0 {
		return false
	}
	seq, i := plainUint(b, i)
	if i < 0 {
		return false
	}
	if i = keyRuleIndex.after(b, i); i < 0 {
		return false
	}
	ruleIndex, i := plainUint(b, i)
	if i < 0 || ruleIndex > 1<<31 {
		return false
	}
	if j := keyPeriodStart.after(b, i); j >= 0 {
		if i = plainStringEnd(b, j); i < 0 {
			return false
		}
	}
	if j := keyPeriodQuantity.after(b, i); j >= 0 {
		if i = plainStringEnd(b, j); i < 0 {
			return false
		}
	}
	if i >= len(b) || b[i] != '}' {
		return false
	}
	d.i = i + 1
	*x = ratedDebit{UsageSeq: seq, RuleIndex: int(ruleIndex), Rule: hashRuleKey(rule), Amount: amount, EventTime: at}
	return true
}

// The members of an entry ahead of its items, as UsageRated.AppendJSON writes them, besides
// the id and customer a debit item starts with too.
var (
	keyFirstSeq = keyWordsOf(`,"first_seq":`)
	keyLastSeq  = keyWordsOf(`,"last_seq":`)
)

// headCanonical returns the index just past an entry's id, customer, first_seq and last_seq
// when the entry starts with them as the rating worker writes them (which the fold skips), or
// -1 for anything else.
func (d *ratedDecoder) headCanonical() int {
	b, i := d.b, d.i
	if i = keyID.after(b, i); i < 0 {
		return -1
	}
	if i = plainStringEnd(b, i); i < 0 {
		return -1
	}
	if i = keyCustomer.after(b, i); i < 0 {
		return -1
	}
	if i = plainStringEnd(b, i); i < 0 {
		return -1
	}
	if i = keyFirstSeq.after(b, i); i < 0 {
		return -1
	}
	if _, i = plainUint(b, i); i < 0 {
		return -1
	}
	if i = keyLastSeq.after(b, i); i < 0 {
		return -1
	}
	if _, i = plainUint(b, i); i < 0 {
		return -1
	}
	return i
}

// after returns the index just past the key k if b continues with it at i, or -1: three
// masked word comparisons, for every member of every item.
func (k *keyWords) after(b []byte, i int) int {
	if i < 0 || len(b)-i < 24 {
		return k.afterNearEnd(b, i)
	}
	w := b[i : i+24]
	if (binary.LittleEndian.Uint64(w)^k.w[0])&k.m[0]|(binary.LittleEndian.Uint64(w[8:])^k.w[1])&k.m[1]|(binary.LittleEndian.Uint64(w[16:])^k.w[2])&k.m[2] != 0 {
		return -1
	}
	return i + k.n
}

// afterNearEnd is after within the last 24 bytes of b.
func (k *keyWords) afterNearEnd(b []byte, i int) int {
	if i >= 0 && len(b)-i >= k.n && string(b[i:i+k.n]) == k.lit {
		return i + k.n
	}
	return -1
}

// plainStringEnd returns the index just past the JSON string that starts at b[i] if it has no
// escape and no control byte, or -1.
func plainStringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; len(b)-i >= 8; i += 8 {
		if m := plainjson.StopBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
			i += bits.TrailingZeros64(m) >> 3
			if b[i] == '"' {
				return i + 1
			}
			return -1
		}
	}
	if i = plainjson.SkipPlain(b, i); i < len(b) && b[i] == '"' {
		return i + 1
	}
	return -1
}

// plainUint reads the JSON integer at b[i] when it is plain — digits only, no leading zero, no
// fraction or exponent after it — and has at most 19 digits, so it cannot overflow. end is -1
// for anything else.
func plainUint(b []byte, i int) (n uint64, end int) {
	j := i
	for j < len(b) && b[j]-'0' <= 9 {
		n = n*10 + uint64(b[j]-'0')
		j++
	}
	if j == i || j-i > 19 || b[i] == '0' && j-i > 1 || j < len(b) && (b[j] == '.' || b[j] == 'e' || b[j] == 'E') {
		return 0, -1
	}
	return n, j
}
