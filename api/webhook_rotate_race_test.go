package api_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/catalog"
	"github.com/allot-dev/allot/events"
)

// A rotation is decided on the endpoint's latest state: two at once both keep their secrets,
// and one racing the dispatcher's disable (a 410) does not enable the endpoint again. Written
// whole and unconditionally, the last write won: secrets handed out were lost, and a disabled
// endpoint came back.
func TestRotationsAndDisablesDoNotUndoEachOther(t *testing.T) {
	h := newHarness(t)
	sc := events.Scope{Product: "acme", Env: "test"}
	r := h.do("POST", "/v1/webhook-endpoints", keyAcme, jsonCT, `{"url":"https://93.184.216.34/hook","events":["*"]}`)
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["id"].(string)
	for round := 0; round < 10; round++ {
		var wg sync.WaitGroup
		secrets := make([]string, 2)
		for i := range secrets {
			wg.Go(func() {
				if r := h.do("POST", "/v1/webhook-endpoints/"+id+"/rotate", keyAcme, jsonCT, `{}`); r.status == 200 {
					secrets[i] = r.body["secret"].(string)
				}
			})
		}
		wg.Go(func() {
			if round%2 == 1 {
				assert.NoError(t, catalog.Writer{JS: h.js, Cat: h.cat}.DisableEndpoint(context.Background(), sc, id, "answered 410 Gone"))
			}
		})
		wg.Wait()
		ep, ok := h.cat.WebhookEndpoint(sc, id)
		require.True(t, ok)
		have := map[string]bool{}
		for _, s := range ep.Secrets {
			have[s.Secret] = true
		}
		for _, s := range secrets {
			require.NotEmpty(t, s, "round %d: a rotation failed", round)
			assert.True(t, have[s], "round %d: a secret handed out was lost", round)
		}
		if round%2 == 1 {
			require.True(t, ep.Disabled, "round %d: a rotation enabled the endpoint a 410 disabled", round)
			ep.Disabled, ep.DisabledReason = false, ""
			require.NoError(t, catalog.PutWebhookEndpoint(context.Background(), h.js, h.cat, sc, ep, time.Now()))
		}
	}
}
