package events

// Benchmarks behind the choice of decimal library (docs/DECISIONS.md, "Exact decimals").
// The workload is rating's hot path: parse a quantity and a price, multiply, add to a
// running total, round half-up to micro-credits.

import (
	"testing"

	apd "github.com/cockroachdb/apd/v3"
	gv "github.com/govalues/decimal"
	ss "github.com/shopspring/decimal"
)

var decimalInputs = [][2]string{{"1234.5678", "0.0015"}, {"3", "0.25"}, {"1000000", "0.000001"}, {"17.125", "1.10"}}

func BenchmarkDecimalShopspring(b *testing.B) {
	b.ReportAllocs()
	total := ss.Zero
	for i := 0; i < b.N; i++ {
		in := decimalInputs[i%len(decimalInputs)]
		q, _ := ss.NewFromString(in[0])
		p, _ := ss.NewFromString(in[1])
		total = total.Add(q.Mul(p))
		_ = total.Round(6)
	}
}

func BenchmarkDecimalAPD(b *testing.B) {
	b.ReportAllocs()
	ctx := apd.BaseContext.WithPrecision(60)
	ctx.Rounding = apd.RoundHalfUp
	var total, prod, rounded apd.Decimal
	for i := 0; i < b.N; i++ {
		in := decimalInputs[i%len(decimalInputs)]
		q, _, _ := apd.NewFromString(in[0])
		p, _, _ := apd.NewFromString(in[1])
		_, _ = ctx.Mul(&prod, q, p)
		_, _ = ctx.Add(&total, &total, &prod)
		_, _ = ctx.Quantize(&rounded, &total, -6)
	}
}

func BenchmarkDecimalGovalues(b *testing.B) {
	b.ReportAllocs()
	total := gv.Zero
	for i := 0; i < b.N; i++ {
		in := decimalInputs[i%len(decimalInputs)]
		q, _ := gv.Parse(in[0])
		p, _ := gv.Parse(in[1])
		m, _ := q.Mul(p)
		total, _ = total.Add(m)
		_ = total.Round(6)
	}
}

// TestDecimalLibrariesAtScale records the property that decided the choice: a quantity of
// 10^20 units at a price of 0.000001 must stay exact. A fixed 19-digit coefficient cannot.
func TestDecimalLibrariesAtScale(t *testing.T) {
	q, p := "100000000000000000000.5", "0.000001"
	want := "100000000000000.0000005"
	a, _ := ss.NewFromString(q)
	b, _ := ss.NewFromString(p)
	if got := a.Mul(b).String(); got != want {
		t.Fatalf("shopspring: got %s want %s", got, want)
	}
	if g, err := gv.Parse(q); err == nil && g.String() == q {
		t.Fatalf("govalues now holds %s exactly; re-check the decision record", q)
	}
}

// BenchmarkDecimalAllot is the same workload on allot's own Decimal (two words while the
// values fit, shopspring beyond).
func BenchmarkDecimalAllot(b *testing.B) {
	b.ReportAllocs()
	var total Decimal
	for i := 0; i < b.N; i++ {
		in := decimalInputs[i%len(decimalInputs)]
		q, _ := ParseDecimal(in[0])
		p, _ := ParseDecimal(in[1])
		total = total.Add(q.Mul(p))
		_, _ = total.Credits()
	}
}
