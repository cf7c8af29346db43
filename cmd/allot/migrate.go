package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/allot-dev/allot/analytics"
)

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dsn := fs.String("clickhouse", "", "ClickHouse DSN, e.g. clickhouse://127.0.0.1:9000/allot (the database is created if missing)")
	if err := bindEnv(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		// The flag parser stops at the first plain word: "replay verify --data D" read no --data.
		return exitWith(2, fmt.Errorf("%s takes no arguments, got %q", fs.Name(), fs.Args()))
	}
	if *dsn == "" {
		return exitWith(2, fmt.Errorf("migrate needs --clickhouse (or ALLOT_CLICKHOUSE)"))
	}
	log, _ := newLogger(stderr, "info")
	conn, err := analytics.Open(ctx, *dsn)
	if err != nil {
		return exitWith(4, err)
	}
	defer conn.Close()
	applied, err := analytics.Migrate(ctx, conn, log)
	if err != nil {
		return exitWith(1, err)
	}
	all, _ := analytics.Migrations()
	fmt.Fprintf(stdout, "%d migrations applied now, %d in all\n", len(applied), len(all))
	for _, m := range applied {
		fmt.Fprintf(stdout, "  %03d_%s\n", m.Version, m.Name)
	}
	return nil
}
