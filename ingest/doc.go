// Package ingest turns producers' requests into usage events on the usage stream.
//
// Invariants:
//   - Each event of a batch is validated on its own; a bad event is reported with its index and
//     never blocks the good ones, and nothing is stored for it.
//   - Success is reported only after JetStream acknowledged every stored event: an accepted
//     event is durable (to the stream's flush policy) before the producer hears so.
//   - Duplicates are decided by JetStream (Nats-Msg-Id = product:env:event-id, within the
//     usage stream's dedup window) and counted, never stored twice. Reusing an id with a
//     different payload is reported as a conflict, and the first payload stands.
//   - When publishing fails part way, the whole request fails with 503: a retry of the same
//     batch is safe because what was stored comes back as duplicates.
//   - Quantities are read exactly (json.Number), never through float64.
package ingest
