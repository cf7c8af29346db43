package api_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An endpoint's attempt log pages back in time: the newest attempts first, then next_cursor
// for the ones before them, until none is left. It had no way past the first page.
func TestDeliveriesPageBackInTime(t *testing.T) {
	h := newHarness(t)
	r := h.do("POST", "/v1/webhook-endpoints", keyAcme, jsonCT, `{"url":"https://93.184.216.34/hook","events":["*"]}`)
	require.Equal(t, 201, r.status, r.raw)
	id := r.body["id"].(string)
	for i := 1; i <= 5; i++ { // as the dispatcher logs them
		_, err := h.js.Publish(context.Background(), "allot.whlog."+id, fmt.Appendf(nil, `{"notification":"msg_%d","attempt":1,"result":"delivered"}`, i))
		require.NoError(t, err)
	}
	var got []string
	path := "/v1/webhook-endpoints/" + id + "/deliveries?limit=2"
	for pages := 0; ; pages++ {
		require.Less(t, pages, 5, "paging does not end")
		r = h.do("GET", path, keyAcme, "", "")
		require.Equal(t, 200, r.status, r.raw)
		var page []string
		for _, d := range r.body["data"].([]any) {
			page = append(page, d.(map[string]any)["notification"].(string))
		}
		got = append(page, got...)
		next, _ := r.body["next_cursor"].(string)
		if next == "" {
			break
		}
		path = "/v1/webhook-endpoints/" + id + "/deliveries?limit=2&cursor=" + next
	}
	assert.Equal(t, []string{"msg_1", "msg_2", "msg_3", "msg_4", "msg_5"}, got)
	r = h.do("GET", "/v1/webhook-endpoints/"+id+"/deliveries?cursor=abc", keyAcme, "", "")
	assert.Equal(t, 400, r.status, r.raw)
	assert.Equal(t, "cursor", r.body["field"], r.raw)
}
