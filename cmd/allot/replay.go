package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/bus"
	"github.com/allot-dev/allot/projector"
)

// replayResult is what `allot replay` prints with --json.
type replayResult struct {
	Entries       uint64  `json:"entries"`
	Seq           uint64  `json:"seq"`
	Customers     int     `json:"customers"`
	Digest        string  `json:"digest"`
	Seconds       float64 `json:"seconds"`
	EntriesPerSec float64 `json:"entries_per_second"`
	Against       string  `json:"verified_against,omitempty"` // live or snapshot
	Expected      string  `json:"expected_digest,omitempty"`  // the last one compared
	Match         *bool   `json:"match,omitempty"`            // every one compared matched
	// Checked is each live process (or the stored snapshot) compared, by ascending sequence.
	Checked []verifyCheck `json:"checked,omitempty"`
	// Rating is each rating partition rebuilt from the usage stream (and, with --verify,
	// compared with its stored snapshot), by partition.
	Rating []ratingCheck `json:"rating,omitempty"`
}

// verifyCheck is one comparison of replay --verify.
type verifyCheck struct {
	Process string `json:"process"`
	Seq     uint64 `json:"seq"`
	Digest  string `json:"digest"`
	Match   bool   `json:"match"`
}

func cmdReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	verify := fs.Bool("verify", false, "compare the rebuilt state with the live projection (or, with no live process, the stored snapshot); exit 1 if they differ")
	natsURL := fs.String("nats-url", "", "NATS of a running allot (e.g. nats://127.0.0.1:4222); empty opens --data directly")
	dataDir := fs.String("data", "./data", "data directory to open when no server runs on it")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	withRating := fs.Bool("rating", true, "rebuild rating's partitions from the usage stream too (and with --verify compare them with their stored snapshots); --rating=false replays the ledger alone")
	if err := bindEnv(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// The flag parser stops at the first plain word: "replay verify --data D" read no --data.
		return exitWith(2, fmt.Errorf("%s takes no arguments, got %q", fs.Name(), fs.Args()))
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	var nc *nats.Conn
	var err error
	if *natsURL != "" {
		if nc, err = nats.Connect(*natsURL, nats.Name("allot-replay")); err != nil {
			return exitWith(4, fmt.Errorf("connecting to %s: %w", *natsURL, err))
		}
	} else {
		emb, err := bus.StartEmbedded(bus.EmbeddedOptions{DataDir: *dataDir, Port: -2})
		if errors.Is(err, bus.ErrDataDirLocked) {
			return exitWith(3, fmt.Errorf("%w: a running allot owns it; replay against it with --nats-url and its NATS address (--nats-listen; nats://127.0.0.1:4222 by default)", err))
		}
		if err != nil {
			return exitWith(3, err)
		}
		defer emb.Shutdown()
		if nc, err = nats.Connect("", nats.InProcessServer(emb.Server)); err != nil {
			return exitWith(4, err)
		}
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return exitWith(4, err)
	}
	// Rating first: its snapshots say how far the ledger must be folded for their debits.
	var rr *ratingReplay
	if *withRating {
		if rr, err = loadRatingReplay(ctx, js); err != nil {
			return err
		}
		if rr != nil {
			if err := rr.rebuild(ctx, js, log); err != nil {
				return err
			}
		}
	}
	var foldTo uint64
	var onRated func(projector.AppliedRated)
	if rr != nil {
		foldTo, onRated = rr.LedgerEnd, rr.ledgerRated
	}
	res, err := replayLedger(ctx, nc, js, *verify, log, foldTo, onRated)
	if err != nil {
		return err
	}
	if rr != nil {
		res.Rating = rr.results(*verify)
	}
	for _, c := range res.Rating {
		if c.Match != nil && !*c.Match {
			*res.Match = false
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
	} else {
		fmt.Fprintf(stdout, "replayed %d ledger entries (to sequence %d) in %.2fs: %.0f entries/s\n", res.Entries, res.Seq, res.Seconds, res.EntriesPerSec)
		fmt.Fprintf(stdout, "customers: %d\ndigest:    %s\n", res.Customers, res.Digest)
		if res.Match != nil {
			for _, c := range res.Checked {
				verdict := "same"
				if !c.Match {
					verdict = "DIFFERS"
				}
				fmt.Fprintf(stdout, "%-9s  %s at sequence %d (%s): %s\n", res.Against+":", c.Digest, c.Seq, c.Process, verdict)
			}
		}
		for _, c := range res.Rating {
			switch {
			case c.Skipped != "":
				fmt.Fprintf(stdout, "rating p%d: not rebuilt at usage sequence %d: %s\n", c.Partition, c.Seq, c.Skipped)
			case c.Match == nil:
				fmt.Fprintf(stdout, "rating p%d: %s at usage sequence %d (%d events, %d rated items)\n", c.Partition, c.Digest, c.Seq, c.Events, c.Debits)
			default:
				var differs []string
				if c.Digest != c.Expected {
					differs = append(differs, "state DIFFERS from its stored snapshot "+c.Expected)
				}
				if c.DebitsDigest != c.LedgerDigest {
					differs = append(differs, fmt.Sprintf("rated items DIFFER from the ledger's (rated again %s, ledger %s)", c.DebitsDigest, c.LedgerDigest))
				}
				verdict := "same"
				if len(differs) > 0 {
					verdict = strings.Join(differs, "; ")
				}
				fmt.Fprintf(stdout, "rating p%d: %s at usage sequence %d (%d events, %d rated items): %s\n", c.Partition, c.Digest, c.Seq, c.Events, c.Debits, verdict)
			}
		}
		if res.Match != nil {
			skipped := 0
			for _, c := range res.Rating {
				if c.Skipped != "" {
					skipped++
				}
			}
			switch {
			case *res.Match && skipped > 0:
				fmt.Fprintf(stdout, "verify: OK, the rebuilt state is byte-identical (%d rating partitions could not be rebuilt: see above)\n", skipped)
			case *res.Match:
				fmt.Fprintln(stdout, "verify: OK, the rebuilt state is byte-identical")
			default:
				fmt.Fprintln(stdout, "verify: MISMATCH")
			}
		}
	}
	if res.Match != nil && !*res.Match {
		return exitWith(1, errors.New("replayed state differs from the "+res.Against+" projection or a stored rating snapshot"))
	}
	return nil
}

// replayLedger folds the ledger stream from its first entry into a fresh projection. With
// verify, it compares with every live process that answers (each at its own sequence: the fold
// stops at each in turn), or with the stored snapshot when none does.
//
// foldTo, when past every sequence compared, folds on to it after the last comparison, with
// onRated (when not nil) called for every debit and quota use the fold applies: rating's
// rebuild compares them with the usage stream rated again.
func replayLedger(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, verify bool, log *slog.Logger, foldTo uint64, onRated func(projector.AppliedRated)) (replayResult, error) {
	var res replayResult
	stream, err := js.Stream(ctx, bus.LedgerStream)
	if err != nil {
		return res, exitWith(4, fmt.Errorf("opening %s: %w", bus.LedgerStream, err))
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return res, exitWith(4, err)
	}
	var against []digestReply // what to compare with, by ascending sequence
	if verify {
		if against, err = liveDigests(nc); err != nil {
			return res, exitWith(4, err)
		}
		res.Against = "live"
		if len(against) == 0 {
			store, err := bus.EnsureSnapshotStore(ctx, js, bus.StreamOptions{})
			if err != nil {
				return res, exitWith(4, err)
			}
			snap, err := projector.LoadLedger(ctx, store)
			if err != nil {
				return res, exitWith(4, err)
			}
			seq, digest, _ := snap.Digest()
			if seq == 0 && info.State.LastSeq > 0 {
				// Folding nothing and comparing it with nothing would say OK over a ledger
				// never read.
				return res, exitWith(4, fmt.Errorf("nothing to verify against: no live allot answered on %s and no snapshot is stored; run it with allot serving, or without --verify to rebuild and print the digest", DigestSubject))
			}
			against = []digestReply{{Process: "stored snapshot", Seq: seq, Digest: digest}}
			res.Against = "snapshot"
			log.Info("no live allot answered; verifying against the stored snapshot", "seq", seq)
		}
	}
	targets := []uint64{info.State.LastSeq}
	if verify {
		targets = targets[:0]
		for _, d := range against {
			if len(targets) == 0 || targets[len(targets)-1] != d.Seq {
				targets = append(targets, d.Seq)
			}
		}
	}
	// The fold past what was compared, for rating's audit, says nothing of its own: the
	// digest and counts printed are those of the last sequence compared (or of the stream's
	// end, without --verify).
	reported := len(targets)
	if n := len(targets); foldTo > 0 && (n == 0 || targets[n-1] < foldTo) {
		targets = append(targets, foldTo)
	}
	l := projector.NewLedger()
	if onRated != nil {
		l.OnRated(onRated)
	}
	start := time.Now()
	lastLog := time.Now()
	allMatch := true
	for i, target := range targets {
		if i == reported {
			res.Seconds = time.Since(start).Seconds()
		}
		n, err := projector.Rebuild(ctx, js, bus.LedgerStream, l, target, func(seq uint64) {
			if time.Since(lastLog) > 2*time.Second {
				log.Info("replaying", "seq", seq, "of", targets[len(targets)-1])
				lastLog = time.Now()
			}
		})
		if err != nil {
			return res, exitWith(4, fmt.Errorf("reading the ledger: %w", err))
		}
		if i >= reported {
			continue
		}
		res.Entries += uint64(n)
		seq, digest, err := l.Digest()
		if err != nil {
			return res, err
		}
		res.Seq, res.Digest, res.Customers = seq, digest, l.Customers()
		for _, d := range against {
			if d.Seq == target {
				c := verifyCheck{Process: d.Process, Seq: d.Seq, Digest: d.Digest, Match: d.Digest == digest && seq == target}
				allMatch = allMatch && c.Match
				res.Checked = append(res.Checked, c)
				res.Expected = d.Digest
			}
		}
	}
	if len(targets) == reported {
		res.Seconds = time.Since(start).Seconds()
	}
	if res.Seconds > 0 {
		res.EntriesPerSec = float64(res.Entries) / res.Seconds
	}
	if verify {
		res.Match = &allMatch
	}
	return res, nil
}

// liveDigests asks every live allot process for its projection's sequence and digest and
// returns the answers by ascending sequence; none when no process listens. Processes answer
// once their projection has settled (up to 5 s), so every answer is waited for that long
// after the one before: a process slower to settle than the first must not drop out of the
// comparison unseen (each one compared is printed).
func liveDigests(nc *nats.Conn) ([]digestReply, error) {
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(DigestSubject, inbox, nil); err != nil {
		return nil, err
	}
	var out []digestReply
	wait := 6 * time.Second
	for {
		m, err := sub.NextMsg(wait)
		if errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) {
			break
		}
		if err != nil {
			return nil, err
		}
		var d digestReply
		if err := json.Unmarshal(m.Data, &d); err != nil {
			return nil, fmt.Errorf("reading a live digest: %w", err)
		}
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b digestReply) int { return cmp.Compare(a.Seq, b.Seq) })
	return out, nil
}
