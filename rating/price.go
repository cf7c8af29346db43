package rating

import "github.com/allot-dev/allot/events"

// Cost is the exact price of quantity q under r's model (before rounding). For flat rules it
// is the price of one event, whatever q. Quantities at or below zero cost nothing.
func Cost(r events.Rule, q events.Decimal) events.Decimal {
	zero := events.Decimal{}
	switch r.Model {
	case events.ModelFlat:
		if r.Price == nil {
			return zero
		}
		return *r.Price
	}
	if q.Sign() <= 0 {
		return zero
	}
	switch r.Model {
	case events.ModelPerUnit:
		if r.Price == nil {
			return zero
		}
		if r.PackageSize != nil && r.PackageSize.Sign() > 0 {
			return q.CeilDiv(*r.PackageSize).Mul(*r.Price)
		}
		return q.Mul(*r.Price)
	case events.ModelGraduated:
		return graduated(r.Tiers, q)
	case events.ModelVolume:
		return volume(r.Tiers, q)
	}
	return zero
}

// graduated prices each slice of q at its own tier's rate and adds the flat fee of every tier
// q enters. Tier i holds (up_to[i-1], up_to[i]]; the first starts above 0.
func graduated(tiers []events.Tier, q events.Decimal) events.Decimal {
	total := events.Decimal{}
	lower := events.Decimal{}
	for _, t := range tiers {
		if q.Cmp(lower) <= 0 {
			break
		}
		upper := q
		if t.UpTo != nil && t.UpTo.Cmp(q) < 0 {
			upper = *t.UpTo
		}
		total = total.Add(upper.Sub(lower).Mul(t.UnitPrice))
		if t.FlatFee != nil {
			total = total.Add(*t.FlatFee)
		}
		if t.UpTo == nil {
			break
		}
		lower = *t.UpTo
	}
	return total
}

// volume prices all of q at the rate of the tier q falls in, plus that tier's flat fee.
func volume(tiers []events.Tier, q events.Decimal) events.Decimal {
	for _, t := range tiers {
		if t.UpTo == nil || q.Cmp(*t.UpTo) <= 0 {
			total := q.Mul(t.UnitPrice)
			if t.FlatFee != nil {
				total = total.Add(*t.FlatFee)
			}
			return total
		}
	}
	return events.Decimal{} // unreachable for valid rules: the last tier is open
}

// Round converts an exact price to micro-credits, half up. ok is false when it does not fit.
func Round(d events.Decimal) (events.Credits, bool) { return d.Credits() }
