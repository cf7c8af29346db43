// Command allot is the one binary: serve, bench, and (as their issues land) replay and
// migrate. It reads flags and environment, wires the packages together by hand, and handles
// signals. It holds no business logic.
//
// Exit codes: 0 success; 1 runtime failure; 2 bad flags or config; 3 the data directory is
// locked by another process or JetStream could not start on it; 4 NATS unreachable.
package main
