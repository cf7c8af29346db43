package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/events"
)

// TestPlainQuotaRequestAgreesWithStrict: whenever the fast reader of check and increment
// bodies accepts one, the strict decoder accepts it too and reads the same customer and
// amount.
func TestPlainQuotaRequestAgreesWithStrict(t *testing.T) {
	for _, body := range []string{
		`{"customer":"acme","amount":"1.5"}`, `{"amount":2,"customer":"acme"}`, ` { "customer" : "c" } `, `{}`,
		`{"customer":"c","amount":-0.5e3}`, `{"customer":"c","amount":"x"}`, `{"customer":"ü"}`,
		`{"customer":"c","customer":"d"}`, `{"Customer":"c"}`, `{"customer":"c\u00e9"}`, `{"customer":"c","amount":null}`,
		`{"customer":"c","extra":1}`, `{"customer":"c"} trailing`, `{"customer":"c",}`, `{"customer":1}`,
		`{"customer":"c","amount":01}`, `{"customer":"c","amount":true}`, ``, `[]`, `{"customer":"c","amount":"1","amount":"2"}`,
	} {
		customer, amount, ok := plainQuotaRequest([]byte(body))
		var strict quotaRequest
		p := decodeStrict([]byte(body), &strict)
		if !ok {
			continue // the strict decoder has the last word
		}
		if p != nil {
			t.Fatalf("%s: fast reader accepted what the strict decoder refuses: %s", body, p.Detail)
		}
		if customer != strict.Customer || !bytes.Equal(amount, strict.Amount) {
			t.Fatalf("%s: fast reader %q %s, strict %q %s", body, customer, amount, strict.Customer, strict.Amount)
		}
	}
	if _, _, ok := plainQuotaRequest([]byte(`{"customer":"acme","amount":"1.5"}`)); !ok {
		t.Fatal("the plain form must take the fast path")
	}
}

func FuzzPlainQuotaRequest(f *testing.F) {
	f.Add([]byte(`{"customer":"acme","amount":"1.5"}`))
	f.Add([]byte(`{"amount":2e-3,"customer":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		customer, amount, ok := plainQuotaRequest(body)
		if !ok {
			return
		}
		var strict quotaRequest
		if p := decodeStrict(body, &strict); p != nil {
			t.Fatalf("%q: fast reader accepted what the strict decoder refuses: %s", body, p.Detail)
		}
		if customer != strict.Customer || !bytes.Equal(amount, strict.Amount) {
			t.Fatalf("%q: fast reader %q %s, strict %q %s", body, customer, amount, strict.Customer, strict.Amount)
		}
	})
}

// appender is an answer with a hand-written encoder.
type appender interface {
	AppendJSON([]byte) ([]byte, error)
}

// sameAsEncodingJSON requires v's hand-written JSON to decode to what encoding/json's does,
// and with plain text (no escapes but a quote) to be the very same bytes.
func sameAsEncodingJSON(t *testing.T, v appender, plain bool) {
	t.Helper()
	want, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.AppendJSON(nil)
	var gotV, wantV any
	if err != nil || json.Unmarshal(got, &gotV) != nil || json.Unmarshal(want, &wantV) != nil || !reflect.DeepEqual(gotV, wantV) ||
		(plain && string(got) != string(want)) {
		t.Fatalf("AppendJSON %s (%v)\nencoding/json %s", got, err, want)
	}
}

// TestViewsEncodeLikeEncodingJSON covers every answer written by hand, over random values.
func TestViewsEncodeLikeEncodingJSON(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	dec := func() events.Decimal {
		return events.DecimalFromInt(rnd.Int64N(2_000_000) - 1_000_000).Mul(events.MustDecimal("0.001"))
	}
	cr := func() events.Credits { return events.Credits(rnd.Int64N(1<<62) - 1<<61) }
	when := func() time.Time {
		return time.Unix(rnd.Int64N(4_000_000_000), rnd.Int64N(1e9)).In(time.FixedZone("z", int(rnd.Int64N(86_400))-43_200))
	}
	for i := range 1000 {
		plain := i%2 == 0
		text := func() string {
			if plain {
				return "plain \" text " + strconv.Itoa(rnd.IntN(1000))
			}
			return "s<&>\"\u2028" + string(rune(rnd.IntN(0x3000))) + "\xff"
		}
		q := quotaStatusView{Allowed: rnd.IntN(2) == 0, Limit: dec(), Quota: text(), Remaining: dec(), Requested: dec(),
			ResetsAt: when(), Used: dec(), WindowStart: when()}
		if rnd.IntN(2) == 0 {
			q.Customer = text()
		}
		sameAsEncodingJSON(t, q, plain)

		e := entitlementView{Allowed: i%3 == 0, Balance: cr(), Customer: text(), EffectiveBalance: cr(), EstimatedCost: cr(),
			Feature: text(), Reason: text(), Reserved: cr(), Version: rnd.Uint64()}
		if rnd.IntN(2) == 0 {
			o := cr()
			e.OverdraftLimit = &o
		}
		sameAsEncodingJSON(t, e, plain)

		b := balanceView{Balance: cr(), Committed: cr(), CreditedBack: cr(), Customer: text(), CustomerID: text(), Debited: cr(),
			EffectiveBalance: cr(), Expired: cr(), Overage: cr(), Reserved: cr(), UnratedEvents: rnd.Int64(), Version: rnd.Uint64()}
		switch i % 3 {
		case 0:
			b.Blocks = []blockView{}
		case 1:
			for range 3 {
				bl := blockView{ID: text(), Source: text(), Priority: rnd.IntN(1_000_000), Granted: cr(), Remaining: cr(), EffectiveAt: when(), Status: text()}
				if rnd.IntN(2) == 0 {
					x := when()
					bl.ExpiresAt = &x
				}
				if rnd.IntN(2) == 0 {
					d := dec()
					bl.CostBasis = &d
				}
				b.Blocks = append(b.Blocks, bl)
			}
		}
		sameAsEncodingJSON(t, b, plain)

		sameAsEncodingJSON(t, reservationView{ID: text(), Customer: text(), Status: text(), Amount: cr(), Committed: cr(),
			ExpiresAt: when(), CreatedAt: when()}, plain)
	}
}

// readsLikeStrict requires a body reader to give, for every body, the value and the problem
// the strict decoder gives.
func readsLikeStrict[T any](t *testing.T, read func([]byte) (T, *problem.Problem), bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		got, gotP := read([]byte(body))
		var want T
		wantP := decodeStrict([]byte(body), &want)
		if (gotP == nil) != (wantP == nil) || (gotP != nil && gotP.Detail != wantP.Detail) {
			t.Fatalf("%s: problem %v, strict %v", body, gotP, wantP)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: read %+v, strict %+v", body, got, want)
		}
	}
}

func TestPlainEntitlementRequestAgreesWithStrict(t *testing.T) {
	readsLikeStrict(t, readEntitlementRequest,
		`{"customer":"c1","feature":"chat","quantity":"100"}`, `{"feature":"chat","customer":"c1"}`, `{"customer":"c","feature":"f","quantity":2.5e1}`,
		`{"customer":"c","feature":"f","quantity":"x"}`, `{"customer":"c","feature":"f","quantity":null}`, `{"customer":1,"feature":"f"}`,
		`{"customer":"c","feature":"f","extra":true}`, `{"customer":"c","customer":"d"}`, `{"Customer":"c"}`, `{}`, ``, `{"customer":"c\u00e9"}`)
}

func TestPlainReserveBodyAgreesWithStrict(t *testing.T) {
	readsLikeStrict(t, readReserveBody,
		`{"customer":"c1","amount":"1"}`, `{"customer":"c1","amount":2.5,"ttl_seconds":60}`, `{"amount":"0.000001","customer":"c"}`,
		`{"customer":"c","amount":"0.0000001"}`, `{"customer":"c","amount":"x"}`, `{"customer":"c","ttl_seconds":1.5}`, `{"customer":"c","ttl_seconds":1e2}`,
		`{"customer":"c","ttl_seconds":"60"}`, `{"customer":"c","ttl_seconds":99999999999999999999}`, `{"customer":"c","ttl_seconds":-0}`,
		`{"customer":"c","amount":null}`, `{"customer":1}`, `{"customer":"c","extra":true}`, `{"customer":"c","customer":"d"}`, `{}`, ``)
}
