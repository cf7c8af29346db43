// Package projector folds the ledger stream into the state services read, per customer:
// credit blocks and their burn order, overage, reservations, quota windows, subscriptions and
// the balances derived from them. It also decides commands on that state and appends them
// with an expected last subject sequence: credit commands (grants, reservations, commits) on
// the customer's subject, quota commands (increments, resets, adjustments) on the customer's
// quota lane, a subject shared by the customers of a product and env (events.QuotaLaneSubject).
//
// Invariants:
//   - Apply is a pure fold: the same entries in the same order give byte-identical state.
//   - Entries at or below the last applied stream sequence are ignored (redelivery). A process
//     folds its own appends from JetStream's acknowledgement (ApplyOwn), ahead of the stream;
//     the fold then skips them, and digests and snapshots wait until it has caught up, so
//     they always describe exactly one sequence.
//   - A customer's usage debits are applied at most once each, even if the same debit was
//     written twice (a re-rate after a crash beyond the dedup window): debits carry their
//     usage stream position, which only ever grows per customer; a debit of an earlier event,
//     or of the last event by a rule already charged for it, is skipped (events.DebitCharged
//     — by rule, not by position in the entry, which a rule added before the re-rate shifts).
//   - Quota windows are forgotten beyond the newest few only once they have surely ended
//     (their end before the newest window's start less events.MaxFutureSkew), so uses dated
//     ahead never push the current window out. A first_use period is anchored by the first
//     counted use only. Windows are matched by start and end; a window of a quota whose
//     period changed starts with what the outermost kept windows inside it used. Usage with
//     a quantity of 0 or less counts nothing.
//   - A hold remembers the hash of the Idempotency-Key that ended it (Reservation.EndedBy),
//     so a keyed retry is recognised past the account's recent command ids (CarriedOut).
//   - The Expirer writes a block's expiry entry a grace period after expires_at, so usage from
//     before it burns the block first. It finds what is due through the fold's expiry index
//     (due.go), never by scanning every account.
//   - Snapshots and digests take the accounts under the read lock only to note them; the
//     fold copies an account a snapshot may be encoding before changing it (copy on write).
//   - Holds (without an Idempotency-Key) for one customer in flight together are group
//     committed (Reservations; groupcommit.go); within a process, appends for one customer go
//     one at a time, each decided on the account in place under the read lock (decisions only
//     read).
//   - Quota increments in flight for any customers of a lane are group committed into one
//     quota.increments.v1 (QuotaCommands). Lane entries are never applied ahead of the stream:
//     the writer folds its own only when it is the next entry of the stream (applyInOrder),
//     else waits for the fold, because one changes many accounts. They change quota windows
//     only, never an account's position on its own subject (LastSeq).
//   - An ended reservation the account forgets leaves a record (hash, expired or not), so a
//     late commit or release is still 409, not 404.
//   - Holds never hold more than the balance, whenever their commits come: a hold is admitted
//     only if the credits that last cover the holds active at each block expiry of its life
//     (Fundable, fundableExactly), and if its commit, in burn order, cannot take from a longer
//     hold what that one needs at a later expiry (holdsAfterStayFunded). Only usage and
//     over-commits make overage.
//   - usage.rated.v1, the hottest entry, is read by a hand-walked decoder (rated_decode.go)
//     that gives the same result as encoding/json for every input: what it does not
//     recognise exactly goes to encoding/json. quota.incremented.v1, quota.increments.v1 and
//     reservation.created.v1 likewise (events/entry_codec.go).
package projector
