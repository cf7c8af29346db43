// Package gateway enforces allot quotas in front of an HTTP API: a net/http middleware for API
// providers, and the reverse proxy behind `allot gateway`. It talks to an allot server over its
// HTTP API, so it runs in the provider's own processes.
//
// For each request it identifies the caller (an API-key header, a claim of a verified JWT, or
// the client IP), checks every policy of the route before calling the handler (429 with the
// RateLimit headers and a problem when one is exhausted), and counts the request after the
// handler answered — only when the status is one of the counted ones (default 2xx), so failed
// calls never use quota. When allot cannot be reached, each policy either lets requests
// through (fail open) or refuses them with 503 (fail closed).
//
// Invariant: a request refused by a check never reaches the handler and is never counted.
package gateway
