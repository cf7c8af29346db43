// Package projector folds the ledger stream into the state services read, per customer:
// credit blocks and their burn order, overage, reservations, quota windows, subscriptions and
// the balances derived from them. It also decides commands (grants, reservations, quota
// increments) on that state and appends them with the customer's expected last sequence.
//
// Invariants:
//   - Apply is a pure fold: the same entries in the same order give byte-identical state.
//   - Entries at or below the last applied stream sequence are ignored (redelivery). A process
//     folds its own appends from JetStream's acknowledgement (ApplyOwn), ahead of the stream;
//     the fold then skips them, and digests and snapshots wait until it has caught up, so
//     they always describe exactly one sequence.
//   - A customer's usage debits are applied at most once each, even if the same debit was
//     written twice (a re-rate after a crash beyond the dedup window): debits carry their
//     usage stream position, which only ever grows per customer, and anything at or below
//     the last applied position is skipped.
//   - Quota increments for one customer in flight together are group committed (Increments);
//     within a process, appends for one customer go one at a time, each decided on the
//     account in place under the read lock (decisions only read).
//   - usage.rated.v1, the hottest entry, is read by a hand-walked decoder (rated_decode.go)
//     that gives the same result as encoding/json for every input: what it does not
//     recognise exactly goes to encoding/json. quota.incremented.v1 and
//     reservation.created.v1 likewise (events/entry_codec.go).
package projector
