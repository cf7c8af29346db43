// Package problem is allot's one error shape: RFC 9457 problem details with stable type URIs
// and, where there is one, the offending field. Every error allot answers is one of these.
package problem
