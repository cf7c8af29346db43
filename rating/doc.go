// Package rating turns usage into credits: pure pricing functions (Cost), a pure fold of usage
// events into per-(customer, rule, period) quantities that emits debit entries (State.Rate),
// and the worker that runs the fold over a partition of the usage stream (Worker).
//
// Invariants:
//   - Pricing is exact: decimals throughout, rounded half up to micro-credits only when a
//     debit is written.
//   - Under the period tier scope, an event's debit is round(C(Q_after)) − round(C(Q_before)),
//     so a period's debits sum to its rounded total whatever the batching; a negative delta
//     (volume pricing) is written as a credit-back, never dropped.
//   - Rate is deterministic: no wall clock, randomness or map-order dependence; the same
//     state and event always give the same debits with the same ids.
//   - The worker stores its state with the usage stream sequence it covers and resumes after
//     it; debit ids derive from (event id, rule, version) and debits carry their usage
//     sequence and rule, so a crash at any point neither loses nor double-counts a debit.
//   - An event is never priced as if its period were empty: one older than the period windows
//     kept is priced alone only when its price is linear, and is otherwise unrated (too_late).
//   - The configuration is part of the state: the worker rates each batch on one view of the
//     meters, rule versions and quotas as of a config sequence, records that sequence (a
//     rating.view.v1 record on the config stream, then its snapshot) before it moves to a
//     newer one, and after a restart rates what was pending on the recorded view, so a crash
//     never changes what an event is charged. The records say which view rated every event,
//     so the state can be rebuilt from the usage stream (Views, Rebuild, RateMessage).
//   - Event times are never further ahead than events.MaxFutureSkew of the stream's time: the
//     worker rates a later-dated event (published straight to JetStream) at the stream's time.
//   - One worker rates a partition at a time: the pool holds the partition's lease, and the
//     worker renews it right before each step only the owner may take (Worker.Confirm), so a
//     process that wakes from a pause longer than the lease writes nothing more (a pause
//     between a renewal and the write it guards aside, as with the sink's inserts).
package rating
