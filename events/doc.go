// Package events is the bottom of allot: the wire types that travel on the streams, their
// versioned names, the subject scheme, and the two number types every other package uses.
//
// Invariants:
//   - It imports nothing of allot's but internal/plainjson (a leaf JSON decoder); every stage
//     meets the others only through these types.
//   - Wire names (usage.recorded.v1, credits.granted.v1, …) and subject layouts are contracts:
//     a change is a new version, never an edit in place.
//   - Money never passes through float64: Credits is an integer count of micro-credits and
//     Decimal is an exact, arbitrary-precision decimal parsed from JSON strings or numbers
//     (held in two machine words while it fits, in shopspring's form beyond).
//   - Encoding is deterministic: the same value always encodes to the same bytes, so replays
//     can be compared byte for byte.
package events
