package problem

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
)

// ContentType is the media type of a problem document.
const ContentType = "application/problem+json"

// TypeBase prefixes every problem type URI. The URIs are stable contracts; docs/errors.md
// describes each one.
const TypeBase = "https://allot.dev/problems/"

// Problem types. Never renamed; add new ones instead.
const (
	InvalidJSON            = "invalid-json"
	InvalidEvent           = "invalid-event"
	InvalidField           = "invalid-field"
	InvalidRequest         = "invalid-request"
	BodyTooLarge           = "body-too-large"
	UnsupportedMediaType   = "unsupported-media-type"
	Unauthenticated        = "unauthenticated"
	Forbidden              = "forbidden"
	NotFound               = "not-found"
	MethodNotAllowed       = "method-not-allowed"
	ConflictingDuplicate   = "conflicting-duplicate"
	Unavailable            = "unavailable"
	Internal               = "internal"
	AnalyticsNotConfigured = "analytics-not-configured"
	InsufficientCredits    = "insufficient-credits"
	ReservationExpired     = "reservation-expired"
	ReservationEnded       = "reservation-ended"
	SubscriptionCanceled   = "subscription-canceled"
	SubscriptionEnded      = "subscription-ended"
	PostpaidSubscription   = "postpaid-subscription-exists"
	IdempotencyKeyReused   = "idempotency-key-reused"
	IdempotencyKeyInFlight = "idempotency-key-in-flight"
	WeightOverLimit        = "weight-over-limit"
	QuotaExceeded          = "quota-exceeded"
	BadGateway             = "bad-gateway" // the gateway's
)

// titles is each type's title: fixed per type (docs/errors.md), so a client may show it; what
// differs between two problems of a type goes in detail.
var titles = map[string]string{
	InvalidJSON:            "Invalid JSON",
	InvalidEvent:           "Invalid event",
	InvalidField:           "Invalid field",
	InvalidRequest:         "Invalid request",
	BodyTooLarge:           "Body too large",
	UnsupportedMediaType:   "Unsupported media type",
	Unauthenticated:        "Unauthenticated",
	Forbidden:              "Forbidden",
	NotFound:               "Not found",
	MethodNotAllowed:       "Method not allowed",
	ConflictingDuplicate:   "Event id reused with a different payload",
	Unavailable:            "Service unavailable",
	Internal:               "Internal error",
	AnalyticsNotConfigured: "Analytics not configured",
	InsufficientCredits:    "Insufficient credits",
	ReservationExpired:     "Reservation expired",
	ReservationEnded:       "Reservation ended",
	SubscriptionCanceled:   "Subscription canceled",
	SubscriptionEnded:      "Subscription ended",
	PostpaidSubscription:   "Postpaid subscription exists",
	IdempotencyKeyReused:   "Idempotency-Key reused",
	IdempotencyKeyInFlight: "Request in flight",
	WeightOverLimit:        "Weight over limit",
	QuotaExceeded:          "Quota exceeded",
	BadGateway:             "Bad gateway",
}

// Title is the title of problems of type kind ("Error" for a type without one, which
// TestEveryProblemTypeIsDocumented does not let in).
func Title(kind string) string {
	if t, ok := titles[kind]; ok {
		return t
	}
	return "Error"
}

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
	// Extra members (e.g. RateLimit's violated-policies) are merged into the object.
	Extra map[string]any `json:"-"`
	// RetryAfter, when set, becomes a Retry-After header (seconds).
	RetryAfter int `json:"-"`
}

// New builds a problem of the given short type, with the type's title.
func New(kind string, status int, detail string) *Problem {
	return &Problem{Type: TypeBase + kind, Title: Title(kind), Status: status, Detail: detail}
}

// Fieldf builds a 400 (or status) problem about one field.
func Fieldf(kind string, status int, field, format string, args ...any) *Problem {
	return &Problem{Type: TypeBase + kind, Title: Title(kind), Status: status, Field: field, Detail: fmt.Sprintf(format, args...)}
}

func (p *Problem) Error() string {
	if p.Field != "" {
		return p.Title + ": " + p.Field + ": " + p.Detail
	}
	return p.Title + ": " + p.Detail
}

// MarshalJSON writes the fixed members and any extras in one object.
func (p Problem) MarshalJSON() ([]byte, error) {
	m := make(map[string]any, 5+len(p.Extra))
	for k, v := range p.Extra {
		m[k] = v
	}
	m["type"], m["title"], m["status"] = p.Type, p.Title, p.Status
	if p.Detail != "" {
		m["detail"] = p.Detail
	}
	if p.Field != "" {
		m["field"] = p.Field
	}
	return json.Marshal(m)
}

// Write sends p as the response.
func Write(w http.ResponseWriter, p *Problem) {
	b, err := json.Marshal(p)
	if err != nil {
		b = []byte(`{"type":"` + TypeBase + Internal + `","title":"Internal error","status":500}`)
		p = &Problem{Status: 500}
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	if p.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(p.RetryAfter))
	}
	w.WriteHeader(p.Status)
	w.Write(b)
}
