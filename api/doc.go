// Package api is allot's HTTP surface (API.md): authentication and scoping, problem+json
// errors, request metrics, and the handlers that hand each request to the stage that owns it.
// It holds no business rules of its own; it lives at the top level because it spans stages
// (docs/ARCHITECTURE.md).
//
// Invariants:
//   - Every response that is not a success is application/problem+json (problem package).
//   - Every /v1 request is authenticated; a key only ever sees its own (product, env), and
//     another scope's objects are answered 404, never with their data.
//   - Bodies are bounded (MaxBody → 413) and read before anything is stored.
//   - A customer's allot UUID that no customer has is a 404, never a new customer named by it.
package api
