// Package metrics writes allot's figures in the Prometheus text exposition format. It is a
// deliberately small registry (counters and gauges read through functions, and latency
// histograms) so that every stage can publish numbers without pulling a metrics framework
// into the event path.
//
// Invariant: output is deterministic for a given state (families and series sorted).
package metrics
