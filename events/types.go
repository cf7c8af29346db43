package events

// Types lists every versioned event name allot writes. Each has a JSON Schema in
// schemas/events (a test keeps the two in step).
var Types = []string{
	TypeUsageRecorded,
	TypeAPIKeyCreated, TypeMeterDefined, TypeRuleVersioned, TypeFeatureDefined,
	TypeUsageRated, TypeUsageDebited, TypeUsageUnrated,
	TypeCreditsGranted, TypeCreditsExpired,
	TypeReservationCreated, TypeReservationsCreated, TypeReservationCommitted, TypeReservationReleased, TypeReservationExpired,
	TypeQuotaDefined, TypeQuotaIncremented, TypeQuotaIncrements, TypeQuotaReset, TypeQuotaAdjusted,
	TypePlanDefined, TypeSubscriptionStarted, TypeSubscriptionRenewed, TypeSubscriptionCanceled,
	TypeWebhookEndpoint, TypeNotification,
}
