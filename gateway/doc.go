// Package gateway enforces allot quotas in front of an HTTP API: a net/http middleware for API
// providers, and the reverse proxy behind `allot gateway`. It talks to an allot server over its
// HTTP API, so it runs in the provider's own processes.
//
// For each request it identifies the caller (an API-key header, a claim of a verified JWT, or
// the client IP; counted under CustomerFor of it, or under a hash of it with Hashed, so that an
// API key is not stored as a customer id) and counts it against every policy of the
// route at once, all or nothing,
// before calling the handler (429 with the RateLimit headers and allot's problem when any is
// exhausted); when the handler's status is not a counted one (default: anything but 2xx and
// 101, an upgrade served) the
// use is given back, so failed calls never use quota. Counting first keeps it exact under
// concurrency: N requests at once against limit L reach the handler min(N, L) times. When
// allot cannot be reached (or refuses the middleware's own key: allot's per-key request limit,
// a 429 marked "limit-scope": "api-key", is not the caller's quota), requests go through uncounted if every policy fails open, and are
// refused with 503 otherwise; a caller allot refuses is refused (403) either way.
//
// The answer that decides is the final one: interim 1xx responses (100 Continue, 103 Early
// Hints) pass through, a connection taken over for a protocol switch answers 101, a handler
// that panics before answering gives its use back (one that had answered keeps it: a caller
// hanging up mid-body was served), and so does a caller that hangs up while it is being
// counted. Route prefixes match the cleaned path whatever its letter case.
//
// Invariant: a refused request never reaches the handler and counts nowhere (but for a call
// to allot that times out after allot counted it: the middleware cannot know it did).
package gateway
