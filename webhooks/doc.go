// Package webhooks turns ledger changes into signed HTTP callbacks.
//
// The Notifier folds the ledger (like any projector, from the projection's snapshot when it
// is not past the notifier's position) and writes one notification per webhook
// event to the outbox stream, on the customer's subject, with an id derived from the ledger
// sequence: re-folding after a crash writes the same ids, which JetStream drops. While no
// scope has an endpoint it only follows the ledger's end (Notifier.idle). The
// Dispatcher reads the outbox and delivers each notification to every endpoint of its scope
// that subscribed to its type, signed per Standard Webhooks, in order per customer: while a
// customer's head notification waits for a retry, that customer's later ones wait too; other
// customers go on.
//
// Invariants:
//   - Every block granted notifies credits.granted, a subscription's plan and rollover blocks
//     included; balance crossings (credits.low, credits.depleted) compare the balance just
//     before and after each entry — for an expiry, just before the block's expires_at.
//   - A failed dispatcher run cancels its deliveries before waiting for them, so one error
//     never holds every customer's deliveries back behind the longest retry.
//   - Retries follow the schedule 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (7 retries), each
//     attempt times out after 15 s; an exhausted delivery is dead-lettered and the customer's
//     queue moves on; a 410 disables the endpoint.
//   - Attempts, done markers and per-customer sequence numbers live in a JetStream key-value
//     bucket, so a restart resumes every schedule where it was and delivers nothing twice
//     that was acknowledged.
//
// It is a top-level package because webhooks are an output of the whole pipeline, fed by the
// ledger and by quota decisions (docs/ARCHITECTURE.md).
package webhooks
