package rating

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/events"
)

func dec(s string) events.Decimal { return events.MustDecimal(s) }
func decp(s string) *events.Decimal {
	d := dec(s)
	return &d
}

// The worked example of DESIGN.md: up_to 100 @ 1.00, up_to 200 @ 0.50, rest @ 0.10.
var exampleTiers = []events.Tier{
	{UpTo: decp("100"), UnitPrice: dec("1.00")},
	{UpTo: decp("200"), UnitPrice: dec("0.50")},
	{UnitPrice: dec("0.10")},
}

func TestCost(t *testing.T) {
	grad := events.Rule{Model: events.ModelGraduated, Tiers: exampleTiers}
	vol := events.Rule{Model: events.ModelVolume, Tiers: exampleTiers}
	withFees := []events.Tier{
		{UpTo: decp("10"), UnitPrice: dec("0"), FlatFee: decp("5")},
		{UpTo: decp("20.5"), UnitPrice: dec("2"), FlatFee: decp("1")},
		{UnitPrice: dec("1")},
	}
	tests := []struct {
		name string
		rule events.Rule
		q    string
		want string
	}{
		{"graduated 250", grad, "250", "155"},
		{"graduated 200", grad, "200", "150"},
		{"graduated 201", grad, "201", "150.1"},
		{"volume 250", vol, "250", "25"},
		{"volume 200", vol, "200", "100"},
		{"volume 201", vol, "201", "20.1"},
		{"graduated at the first bound", grad, "100", "100"},
		{"graduated just past the first bound", grad, "100.000001", "100.0000005"},
		{"volume just past the first bound", vol, "100.000001", "50.0000005"},
		{"volume just below a bound", vol, "199.999999", "99.9999995"},
		{"graduated zero", grad, "0", "0"},
		{"volume zero", vol, "0", "0"},
		{"graduated negative", grad, "-5", "0"},
		{"flat fee on the first tier", events.Rule{Model: events.ModelGraduated, Tiers: withFees}, "0.5", "5"},
		{"flat fees of every entered tier", events.Rule{Model: events.ModelGraduated, Tiers: withFees}, "25", "5+21+4.5+1"},
		{"volume takes only its tier's fee", events.Rule{Model: events.ModelVolume, Tiers: withFees}, "15", "31"},
		{"volume tier 1 fee", events.Rule{Model: events.ModelVolume, Tiers: withFees}, "3", "5"},
		{"per unit", events.Rule{Model: events.ModelPerUnit, Price: decp("0.002")}, "1500", "3"},
		{"per unit decimal quantity", events.Rule{Model: events.ModelPerUnit, Price: decp("0.25")}, "0.3", "0.075"},
		{"package rounds up", events.Rule{Model: events.ModelPerUnit, Price: decp("2"), PackageSize: decp("1000")}, "1001", "4"},
		{"package exact", events.Rule{Model: events.ModelPerUnit, Price: decp("2"), PackageSize: decp("1000")}, "2000", "4"},
		{"package zero quantity", events.Rule{Model: events.ModelPerUnit, Price: decp("2"), PackageSize: decp("1000")}, "0", "0"},
		{"flat ignores quantity", events.Rule{Model: events.ModelFlat, Price: decp("0.01")}, "1000", "0.01"},
		{"huge quantity stays exact", grad, "123456789012345678901234567890.5", "12345678901234567890123456919.05"}, // 150 + (Q-200)×0.1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.want
			if want == "5+21+4.5+1" {
				want = "31.5" // 5 (tier 1 fee) + 10.5×2 + 1 (tier 2 fee) + 4.5×1
			}
			assert.Equal(t, want, Cost(tt.rule, dec(tt.q)).String())
		})
	}
}

func TestRoundHalfUp(t *testing.T) {
	c, ok := Round(dec("100.0000005"))
	require.True(t, ok)
	assert.Equal(t, events.Credits(100_000_001), c)
	c, ok = Round(dec("0.0000004999"))
	require.True(t, ok)
	assert.Equal(t, events.Credits(0), c)
	_, ok = Round(dec("12345678901234567890123456919.05"))
	assert.False(t, ok, "an amount beyond the ledger's range is reported, never wrapped")
}
