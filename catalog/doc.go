// Package catalog is the configuration in force: API keys, meters and (as later stages add
// them) rules, quotas, features and plans. It is a fold of the config stream, kept in memory
// by every allot process and followed live.
//
// Invariants:
//   - Every configuration change is an event on the config stream; the catalog is nothing but
//     their fold, so replaying the stream to a sequence gives the configuration then in force.
//   - Apply is deterministic and ignores sequences at or below the last one applied.
//   - Readers never see a half-applied change (one lock around each Apply).
//   - API keys are held only as SHA-256 hashes.
package catalog
