package api

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

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

// TestQuotaStatusViewEncoding: the hand-written answer is encoding/json's: the same bytes but
// for <, > and &, which encoding/json alone escapes, and the same value.
func TestQuotaStatusViewEncoding(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	dec := func() events.Decimal {
		return events.DecimalFromInt(rnd.Int64N(2_000_000) - 1_000_000).Mul(events.MustDecimal("0.001"))
	}
	when := func() time.Time {
		return time.Unix(rnd.Int64N(4_000_000_000), rnd.Int64N(1e9)).In(time.FixedZone("z", int(rnd.Int64N(86_400))-43_200))
	}
	for i := range 500 {
		v := quotaStatusView{Allowed: rnd.IntN(2) == 0, Limit: dec(), Quota: "q<&>\"" + string(rune(rnd.IntN(0x3000))),
			Remaining: dec(), Requested: dec(), ResetsAt: when(), Used: dec(), WindowStart: when()}
		if i%2 == 0 {
			v.Customer = "cust-\u2028" + string(rune(rnd.IntN(0x3000)))
		}
		want, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := v.AppendJSON(nil)
		var gotV, wantV any
		if err != nil || json.Unmarshal(got, &gotV) != nil || json.Unmarshal(want, &wantV) != nil || !reflect.DeepEqual(gotV, wantV) ||
			string(got) != strings.NewReplacer("\\u003c", "<", "\\u003e", ">", "\\u0026", "&").Replace(string(want)) {
			t.Fatalf("AppendJSON %s (%v)\nencoding/json %s", got, err, want)
		}
	}
}
