package api

import (
	"context"

	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
)

func featureSpec(rule string, overdraft *events.Credits, disabled bool) catalog.FeatureSpec {
	return catalog.FeatureSpec{Rule: rule, OverdraftLimit: overdraft, Disabled: disabled}
}

func putFeature(ctx context.Context, s *Server, sc events.Scope, f events.Feature) (int, error) {
	return catalog.PutFeature(ctx, s.o.JS, s.o.Catalog, sc, f, s.o.Now())
}
