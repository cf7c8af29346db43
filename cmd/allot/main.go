package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"

	"github.com/allot-dev/allot/internal/gctune"
)

// exitError carries an exit code out of a subcommand.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

const usage = `allot — usage metering, credits and quotas on NATS JetStream

Usage:
  allot serve [flags]        run everything (embedded NATS unless --nats-url)
  allot migrate --clickhouse DSN
                             apply the ClickHouse migrations (serve also applies them)
  allot gateway --config gateway.yaml [--listen ADDR] [--upstream URL]
                             reverse proxy enforcing allot quotas per route group
  allot replay [--verify] [--nats-url URL | --data DIR]
                             rebuild the projections from the streams (the ledger's, and
                             rating's from the usage stream), print their digests, and with
                             --verify compare with the live state (exit 1 if different)
  allot bench [ingest|rating|pipeline|check|quota|replay|memory|sink|all] [--json]
                             measure throughput next to raw JetStream baselines
  allot version

Run "allot <command> -h" for the flags of a command. Every flag also reads an ALLOT_…
environment variable (e.g. --nats-url ↔ ALLOT_NATS_URL).
`

// defaultGCPercent is the garbage collector's target unless GOGC is set. allot's heap is a
// long-lived projection (accounts, windows) that every collection must mark, plus a stream of
// short-lived message buffers that cause the collections: at Go's default of 100 the embedded
// pipeline spent about a fifth of its CPU collecting. 200 halves the number of collections for
// a peak heap of about three times the live one instead of two (docs/DECISIONS.md, "GOGC=200").
const defaultGCPercent = 200

// defaultGCHeapFloor is the smallest heap goal (internal/gctune) unless ALLOT_GC_HEAP_FLOOR
// says otherwise: while the live heap is small, collections come at this many bytes
// allocated rather than every few MiB (docs/DECISIONS.md, "GC heap floor").
const defaultGCHeapFloor = 256 << 20

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	floor, err := gcHeapFloor(os.Getenv("ALLOT_GC_HEAP_FLOOR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "allot:", err)
		os.Exit(2)
	}
	base := debug.SetGCPercent(defaultGCPercent) // read GOGC as the runtime parsed it
	debug.SetGCPercent(base)
	gctune.Start(floor, base)
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// gcHeapFloor reads ALLOT_GC_HEAP_FLOOR: bytes, or a number with KiB, MiB or GiB; 0 or off
// turns the floor off; empty is the default.
func gcHeapFloor(setting string) (uint64, error) {
	v := strings.TrimSpace(setting)
	switch v {
	case "":
		return defaultGCHeapFloor, nil
	case "off":
		return 0, nil
	}
	unit := uint64(1)
	for _, u := range []struct {
		suffix string
		size   uint64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"B", 1}} {
		if n, ok := strings.CutSuffix(v, u.suffix); ok {
			v, unit = strings.TrimSpace(n), u.size
			break
		}
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n > (1<<50)/unit {
		return 0, fmt.Errorf("ALLOT_GC_HEAP_FLOOR=%q: want bytes or a whole number of KiB, MiB or GiB (e.g. 256MiB), or off", setting)
	}
	return n * unit, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stdout, stderr)
	case "migrate":
		err = cmdMigrate(ctx, args[1:], stdout, stderr)
	case "gateway":
		err = cmdGateway(ctx, args[1:], stdout, stderr)
	case "replay":
		err = cmdReplay(ctx, args[1:], stdout, stderr)
	case "bench":
		err = cmdBench(ctx, args[1:], stdout, stderr)
	case "bench-load": // bench's own load generator, run as a process of its own
		err = cmdBenchLoad(ctx, os.Stdin, stdout)
	case "version":
		fmt.Fprintln(stdout, "allot", version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "allot: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil && !errors.Is(ee.err, errHelp) {
			fmt.Fprintln(stderr, "allot:", ee.err)
		}
		return ee.code
	}
	fmt.Fprintln(stderr, "allot:", err)
	return 1
}

var version = "dev"

var errHelp = errors.New("help requested")

func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", level)
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}
