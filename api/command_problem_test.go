package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/allot-dev/allot/api/problem"
	"github.com/allot-dev/allot/projector"
)

// Each refusal a ledger command can meet has an answer of its own, with its type's fixed
// title; only what is not one (NATS unreachable, say) is a 503 to retry.
func TestCommandProblems(t *testing.T) {
	s := &Server{o: Options{Log: slog.New(slog.DiscardHandler)}}
	for _, tc := range []struct {
		err    error
		status int
		kind   string
	}{
		{fmt.Errorf("%w: sub_1", projector.ErrSubscriptionExists), http.StatusUnprocessableEntity, problem.IdempotencyKeyReused},
		{projector.ErrSubscriptionCanceled, http.StatusConflict, problem.SubscriptionCanceled},
		{fmt.Errorf("%w: its next cycle would end in year 10000", projector.ErrSubscriptionEnds), http.StatusConflict, problem.SubscriptionEnded},
		{projector.ErrPostpaidExists, http.StatusConflict, problem.PostpaidSubscription},
		{projector.ErrInsufficientCredits, http.StatusConflict, problem.InsufficientCredits},
		{projector.ErrReservationExpired, http.StatusConflict, problem.ReservationExpired},
		{projector.ErrReservationEnded, http.StatusConflict, problem.ReservationEnded},
		{projector.ErrReservationNotFound, http.StatusNotFound, problem.NotFound},
		{projector.ErrNotVisibleYet, http.StatusServiceUnavailable, problem.Unavailable},
		{fmt.Errorf("nats: timeout"), http.StatusServiceUnavailable, problem.Unavailable},
	} {
		p := s.commandProblem(tc.err)
		assert.Equal(t, tc.status, p.Status, tc.err.Error())
		assert.Equal(t, problem.TypeBase+tc.kind, p.Type, tc.err.Error())
		assert.Equal(t, problem.Title(tc.kind), p.Title, tc.err.Error())
	}
}
