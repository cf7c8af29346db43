// Package bus owns allot's use of NATS: the embedded server, the connection, and the stream
// definitions. It is infrastructure shared by every stage, so it lives beside them rather than
// inside one (docs/ARCHITECTURE.md).
//
// Invariants:
//   - Only one process owns a data directory: StartEmbedded takes an exclusive file lock and
//     fails fast, with ErrDataDirLocked, when another process holds it.
//   - Embedded JetStream flushes to disk at least every second (nats-server's default is two
//     minutes); SyncAlways makes every write synchronous.
//   - EnsureStreams is idempotent: it creates missing streams and updates the mutable parts of
//     existing ones, and never deletes data nor lowers a stream's or bucket's replicas. The
//     usage partitions and the quota lanes are fixed when their stream is created: asking for
//     others is refused (ErrPartitionsFixed, ErrQuotaLanesFixed).
//   - A failure to start JetStream is an error returned promptly, never a hang.
//   - A rebuild's read (FoldOrdered) folds every message through its target once, in stream
//     order, on one goroutine; a stream that stops delivering before the target ends the read
//     with ErrStalled instead of waiting forever.
package bus
