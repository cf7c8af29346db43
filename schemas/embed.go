// Package schemas carries allot's data definitions — JSON Schemas of events, the OpenAPI
// document, ClickHouse migrations — and embeds the ones the binary applies itself.
package schemas

import "embed"

// ClickHouse holds the versioned ClickHouse migrations, clickhouse/NNN_name.sql, applied in
// order by `allot migrate`.
//
//go:embed clickhouse/*.sql
var ClickHouse embed.FS
