package analytics

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/allot-dev/allot/schemas"
)

// Open connects to ClickHouse, creating the DSN's database when it does not exist yet.
func Open(ctx context.Context, dsn string) (driver.Conn, error) {
	opts, err := clickhouse.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("clickhouse DSN: %w", err)
	}
	if db := opts.Auth.Database; db != "" && db != "default" {
		boot := *opts
		boot.Auth.Database = "default"
		c, err := clickhouse.Open(&boot)
		if err != nil {
			return nil, err
		}
		err = c.Exec(ctx, "CREATE DATABASE IF NOT EXISTS "+quoteIdent(db))
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("creating database %s: %w", db, err)
		}
	}
	return clickhouse.Open(opts)
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

// Migration is one versioned schema change.
type Migration struct {
	Version    int
	Name       string
	Statements []string
}

// Migrations reads the embedded migrations, in version order.
func Migrations() ([]Migration, error) {
	files, err := fs.Glob(schemas.ClickHouse, "clickhouse/*.sql")
	if err != nil {
		return nil, err
	}
	var out []Migration
	for _, f := range files {
		base := strings.TrimSuffix(f[len("clickhouse/"):], ".sql")
		num, name, ok := strings.Cut(base, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("migration %s: want NNN_name.sql", f)
		}
		b, err := schemas.ClickHouse.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, Migration{Version: v, Name: name, Statements: splitSQL(string(b))})
	}
	slices.SortFunc(out, func(a, b Migration) int { return a.Version - b.Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("two migrations numbered %d", out[i].Version)
		}
	}
	return out, nil
}

// splitSQL drops comment lines and splits on semicolons ending a statement.
func splitSQL(s string) []string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "--") {
			continue
		}
		lines = append(lines, l)
	}
	var out []string
	for _, st := range strings.Split(strings.Join(lines, "\n"), ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

// Migrate applies the migrations ClickHouse does not have yet and returns them. Statements are
// idempotent (IF NOT EXISTS), so two processes migrating at once do no harm.
func Migrate(ctx context.Context, conn driver.Conn, log *slog.Logger) ([]Migration, error) {
	if err := CheckUTC(ctx, conn); err != nil {
		return nil, err
	}
	if err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS allot_schema_migrations (version UInt32, name String, applied_at DateTime) ENGINE = MergeTree() ORDER BY version`); err != nil {
		return nil, fmt.Errorf("creating allot_schema_migrations: %w", err)
	}
	rows, err := conn.Query(ctx, "SELECT DISTINCT version FROM allot_schema_migrations")
	if err != nil {
		return nil, err
	}
	have := map[int]bool{}
	for rows.Next() {
		var v uint32
		if err := rows.Scan(&v); err != nil {
			rows.Close()
			return nil, err
		}
		have[int(v)] = true
	}
	rows.Close()
	all, err := Migrations()
	if err != nil {
		return nil, err
	}
	var applied []Migration
	for _, m := range all {
		if have[m.Version] {
			continue
		}
		for i, st := range m.Statements {
			if err := conn.Exec(ctx, st); err != nil {
				return applied, fmt.Errorf("migration %03d_%s, statement %d: %w", m.Version, m.Name, i+1, err)
			}
		}
		// Through the batch protocol: ClickHouse 18.16 does not take INSERT … VALUES with
		// bound parameters from this driver.
		b, err := conn.PrepareBatch(ctx, "INSERT INTO allot_schema_migrations (version, name, applied_at)")
		if err != nil {
			return applied, err
		}
		if err := b.Append(uint32(m.Version), m.Name, time.Now().UTC()); err != nil {
			return applied, err
		}
		if err := b.Send(); err != nil {
			return applied, fmt.Errorf("recording migration %d: %w", m.Version, err)
		}
		log.Info("clickhouse migration applied", "version", m.Version, "name", m.Name)
		applied = append(applied, m)
	}
	return applied, nil
}

// CheckUTC refuses a ClickHouse server whose time zone is not UTC: DateTime columns, their
// monthly partitions and the rollups' days follow the server's zone, while the sink splits its
// inserts by UTC month — a batch could then span two partitions and stop being atomic, and day
// windows would come back as local midnights labelled UTC.
func CheckUTC(ctx context.Context, conn driver.Conn) error {
	var winter, summer uint32
	var zone string
	if err := conn.QueryRow(ctx, "SELECT toUInt32(toDateTime('2026-01-01 00:00:00')), toUInt32(toDateTime('2026-07-01 00:00:00')), timezone()").Scan(&winter, &summer, &zone); err != nil {
		return fmt.Errorf("reading ClickHouse's time zone: %w", err)
	}
	if winter != 1767225600 || summer != 1782864000 {
		return fmt.Errorf("ClickHouse runs in time zone %q; allot needs UTC (<timezone>UTC</timezone> in its config.xml)", zone)
	}
	return nil
}
