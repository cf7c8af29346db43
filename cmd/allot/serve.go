package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/allot-dev/allot/projector"
)

// bindEnv gives every flag of fs an ALLOT_<NAME> environment variable, used when the flag is
// not on the command line.
func bindEnv(fs *flag.FlagSet, args []string) error { return bindEnvPrefix(fs, args, "ALLOT_") }

// bindEnvPrefix is bindEnv with prefix in place of ALLOT_.
func bindEnvPrefix(fs *flag.FlagSet, args []string, prefix string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitWith(0, errHelp)
		}
		return exitWith(2, err)
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		env := prefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if e := fs.Set(f.Name, v); e != nil {
				err = exitWith(2, fmt.Errorf("%s=%q: %w", env, v, e))
			}
		}
	})
	return err
}

func cmdServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg nodeConfig
	var logLevel string
	fs.StringVar(&cfg.ConfigFile, "config", "", "YAML file of keys and configuration to apply at start")
	fs.StringVar(&cfg.DataDir, "data", "./data", "data directory of the embedded NATS server")
	fs.StringVar(&cfg.HTTPAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&cfg.NATSURL, "nats-url", "", "external NATS URL(s), comma separated; empty runs an embedded server")
	fs.StringVar(&cfg.NATSListen, "nats-listen", "127.0.0.1:4222", "client listener of the embedded NATS server (host:port, port 0 = any), or off")
	fs.StringVar(&cfg.ClickHouseDSN, "clickhouse", "", "ClickHouse DSN, e.g. clickhouse://127.0.0.1:9000/allot; empty disables analytics")
	fs.DurationVar(&cfg.DedupWindow, "dedup-window", time.Hour, "how long a usage event id is remembered for deduplication")
	fs.IntVar(&cfg.UsagePartitions, "usage-partitions", 8, "partitions of the usage stream (fixed when the stream is created)")
	fs.IntVar(&cfg.QuotaLanes, "quota-lanes", 0, "quota lanes per product and env (fixed when the ledger stream is created; 0: the stream's, 1 for a new one)")
	fs.IntVar(&cfg.Replicas, "replicas", 1, "stream replicas (3 on a NATS cluster)")
	fs.BoolVar(&cfg.FsyncAlways, "fsync-always", false, "embedded NATS: fsync every write instead of every second")
	fs.Int64Var(&cfg.MaxBody, "max-body", 5<<20, "largest request body in bytes")
	fs.DurationVar(&cfg.UsageQueryTimeout, "usage-query-timeout", 30*time.Second, "longest a /v1/usage query may run in ClickHouse")
	fs.Int64Var(&cfg.KeyRequestsPerMinute, "key-requests-per-minute", 600000, "allot's own API: requests per API key per minute in each process (0: unlimited)")
	fs.Float64Var(&cfg.WebhookRetryScale, "webhook-retry-scale", 1, "multiply the webhook retry schedule (5s, 5m, 30m, 2h, 5h, 10h, 10h) by this")
	fs.DurationVar(&cfg.WebhookTimeout, "webhook-timeout", 15*time.Second, "time limit of one webhook delivery attempt")
	fs.DurationVar(&cfg.ExpiryGrace, "expiry-grace", projector.DefaultExpiryGrace, "how long after a credit block's expiry allot waits for usage rating is still pricing before it writes the expiry entry")
	fs.BoolVar(&cfg.WebhooksAllowPrivate, "webhooks-allow-private", false, "let webhook endpoints be on loopback, private or link-local addresses (refused by default: deliveries would reach into the operator's network)")
	fs.DurationVar(&cfg.SnapshotEvery, "snapshot-every", 2*time.Second, "how often rating saves its state (a restart re-rates at most this much)")
	fs.DurationVar(&cfg.RatingLinger, "rating-linger", 100*time.Millisecond, "while usage flows, how long a rating fetch may wait to fill: longer means bigger batches, fewer ledger entries and less CPU per event, and balances that trail usage by up to this much")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	var roles string
	fs.StringVar(&roles, "roles", "all", "what this process runs: all, or a comma-separated list of ingest, api, rating, projector, sink, webhooks")
	if err := bindEnv(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return exitWith(2, fmt.Errorf("serve takes no arguments, got %q", fs.Args()))
	}
	if cfg.QuotaLanes < 0 || cfg.UsagePartitions < 1 {
		return exitWith(2, fmt.Errorf("--quota-lanes must be 0 or more and --usage-partitions 1 or more"))
	}
	// A value out of range is a mistake to say so, not to replace by a default (a negative
	// --max-body became 5 MiB, a negative --key-requests-per-minute no limit at all).
	for _, c := range []struct {
		bad  bool
		flag string
	}{
		{cfg.DedupWindow <= 0, "--dedup-window must be above 0"},
		{cfg.Replicas < 1, "--replicas must be 1 or more"},
		{cfg.MaxBody < 1, "--max-body must be 1 byte or more"},
		{cfg.UsageQueryTimeout <= 0, "--usage-query-timeout must be above 0"},
		{cfg.KeyRequestsPerMinute < 0, "--key-requests-per-minute must be 0 (no limit) or more"},
		{!(cfg.WebhookRetryScale > 0 && cfg.WebhookRetryScale <= 1000), "--webhook-retry-scale must be a number above 0 and at most 1000"},
		{cfg.WebhookTimeout <= 0, "--webhook-timeout must be above 0"},
		{cfg.ExpiryGrace <= 0, "--expiry-grace must be above 0"},
		{cfg.SnapshotEvery <= 0, "--snapshot-every must be above 0"},
		{cfg.RatingLinger <= 0, "--rating-linger must be above 0"},
	} {
		if c.bad {
			return exitWith(2, errors.New(c.flag))
		}
	}
	var err error
	if cfg.Roles, err = parseRoles(roles); err != nil {
		return exitWith(2, err)
	}
	log, err := newLogger(stderr, logLevel)
	if err != nil {
		return exitWith(2, err)
	}
	cfg.Log = log
	n, err := startNode(ctx, cfg)
	if err != nil {
		return err
	}
	log.Info("allot serving", "http", n.httpURL(), "version", version)
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-n.bgErr:
		log.Error("stopping after a failure", "err", runErr)
	}
	if err := n.close(context.Background()); err != nil {
		log.Error("shutdown", "err", err)
	}
	log.Info("stopped")
	return runErr
}
