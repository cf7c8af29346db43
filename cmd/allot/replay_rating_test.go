package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/internal/bustest"
)

// A live worker rewrites its snapshot every --snapshot-every, and a rewrite removes the chunks
// of the version a reader may be in the middle of: replay reads it again instead of failing
// (it exited 4 in review, for 2 to 9 reads of 16 against a busy rewriter).
func TestReplayReadsARatingSnapshotBeingRewritten(t *testing.T) {
	ctx := context.Background()
	js := bustest.JetStream(t)
	store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
	require.NoError(t, err)
	// A state of 20,000 customers: a few MB, many chunks.
	var accs []string
	for i := 0; i < 20_000; i++ {
		accs = append(accs, fmt.Sprintf(`{"product":"acme","env":"live","customer":"c%06d","rule":"price","windows":[{"start":"2026-05-01T00:00:00Z","end":"2026-06-01T00:00:00Z","q":"%d"}]}`, i, i))
	}
	snap := []byte(`{"format":2,"seq":40000,"config_seq":7,"accs":[` + strings.Join(accs, ",") + `]}`)
	_, err = store.PutBytes(ctx, "rating/p0", snap)
	require.NoError(t, err)
	// The worker rewrites it every 100 ms for a while (a busy rewriter: a real one waits
	// --snapshot-every), and replay reads it all the while: a read that a rewrite overtakes
	// is tried again, and every read ends with the snapshot.
	rewriting := make(chan struct{})
	go func() {
		defer close(rewriting)
		for end := time.Now().Add(1500 * time.Millisecond); time.Now().Before(end); {
			time.Sleep(100 * time.Millisecond)
			store.PutBytes(ctx, "rating/p0", snap)
		}
	}()
	for i, done := 0, false; !done || i < 5; i++ {
		select {
		case <-rewriting:
			done = true
		default:
		}
		st, err := readRatingSnapshot(ctx, store, "rating/p0", uint64(len(snap)))
		require.NoError(t, err, "read %d", i)
		assert.EqualValues(t, 40000, st.Seq)
		assert.EqualValues(t, 7, st.ConfigSeq)
	}
}
