// Package projector folds the ledger stream into the state services read: per-customer
// balances (and, as the credit ledger and quota issues land, credit blocks, reservations and
// quota windows).
//
// Invariants:
//   - Apply is a pure fold: the same entries in the same order give byte-identical state.
//   - Entries at or below the last applied stream sequence are ignored (redelivery).
//   - A customer's usage debits are applied at most once each, even if the same debit was
//     written twice (a re-rate after a crash beyond the dedup window): debits carry their
//     usage stream position, which only ever grows per customer, and anything at or below
//     the last applied position is skipped.
package projector
