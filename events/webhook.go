package events

import "time"

// KindWebhook is the config kind of webhook endpoints.
const KindWebhook = "webhook"

// TypeWebhookEndpoint records a webhook endpoint's state; the latest per id is in force.
const TypeWebhookEndpoint = "webhook.endpoint.v1"

// WebhookSecret is one signing secret ("whsec_" + base64). During a rotation the endpoint
// has two and every delivery carries both signatures.
type WebhookSecret struct {
	Secret    string     `json:"secret"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// WebhookEndpoint receives signed events of the types it subscribed to.
type WebhookEndpoint struct {
	ID                  string          `json:"id"`
	URL                 string          `json:"url"`
	Events              []string        `json:"events"`
	Secrets             []WebhookSecret `json:"secrets"`
	LowBalanceThreshold *Credits        `json:"low_balance_threshold,omitempty"`
	Disabled            bool            `json:"disabled,omitempty"`
	DisabledReason      string          `json:"disabled_reason,omitempty"`
}

// WebhookEndpointChanged is the config event carrying an endpoint.
type WebhookEndpointChanged struct {
	Product  string          `json:"product"`
	Env      string          `json:"env"`
	Endpoint WebhookEndpoint `json:"endpoint"`
	At       time.Time       `json:"at"`
}

// Webhook event types (what receivers subscribe to).
const (
	HookCreditsGranted       = "credits.granted"
	HookCreditsLow           = "credits.low"
	HookCreditsDepleted      = "credits.depleted"
	HookCreditsExpired       = "credits.expired"
	HookReservationExpired   = "reservation.expired"
	HookQuotaExceeded        = "quota.exceeded"
	HookSubscriptionRenewed  = "subscription.renewed"
	HookSubscriptionCanceled = "subscription.canceled"
)

// HookTypes lists every webhook event type.
var HookTypes = []string{HookCreditsGranted, HookCreditsLow, HookCreditsDepleted, HookCreditsExpired, HookReservationExpired,
	HookQuotaExceeded, HookSubscriptionRenewed, HookSubscriptionCanceled}

// TypeNotification names an outbox message.
const TypeNotification = "notification.v1"

// Notification is one webhook event on the outbox, subject
// allot.outbox.<product>.<env>.<customer>; the dispatcher delivers it to every endpoint of
// the scope that subscribed to its type, in order per customer.
type Notification struct {
	ID       string         `json:"id"` // also the webhook-id header
	Type     string         `json:"type"`
	Customer string         `json:"customer"`
	Data     map[string]any `json:"data"`
	At       time.Time      `json:"at"`
	// Endpoint, when set, limits delivery to one endpoint (per-endpoint thresholds).
	Endpoint string `json:"endpoint,omitempty"`
}

// OutboxPrefix is the subject root of the outbox stream.
const OutboxPrefix = "allot.outbox"

// OutboxSubject is a customer's outbox subject.
func OutboxSubject(product, env, customer string) string {
	return OutboxPrefix + "." + product + "." + env + "." + Token(customer)
}
