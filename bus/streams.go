package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/allot-dev/allot/events"
)

// Stream names. They are contracts with every deployed data directory: never renamed.
const (
	UsageStream      = "ALLOT_USAGE"
	LedgerStream     = "ALLOT_LEDGER"
	ConfigStream     = "ALLOT_CONFIG"
	OutboxStream     = "ALLOT_OUTBOX"
	WebhookLogStream = "ALLOT_WEBHOOK_LOG"
)

// StreamOptions are the knobs operators set on the streams.
type StreamOptions struct {
	Replicas        int           // 1 embedded, 3 on a cluster
	DedupWindow     time.Duration // usage event-id dedup window; default 1h
	UsagePartitions int           // fixed at creation; default 8
	// QuotaLanes is the number of quota lanes of each product and env (events.QuotaLane),
	// fixed when the ledger stream is created and kept in its metadata; 0 takes the stream's
	// (1 for a new stream).
	QuotaLanes int
}

// quotaLanesKey is the ledger stream's metadata entry holding its number of quota lanes.
const quotaLanesKey = "allot.quota_lanes"

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.DedupWindow <= 0 {
		o.DedupWindow = time.Hour
	}
	if o.UsagePartitions <= 0 {
		o.UsagePartitions = 8
	}
	return o
}

// StreamConfigs returns the definitions of allot's streams.
func StreamConfigs(o StreamOptions) []jetstream.StreamConfig {
	o = o.withDefaults()
	return []jetstream.StreamConfig{
		{
			Name:        UsageStream,
			Description: "allot usage events (usage.recorded.v1), partitioned by customer",
			Subjects:    []string{events.UsagePrefix + ".*.*.*"},
			SubjectTransform: &jetstream.SubjectTransformConfig{
				Source: events.UsagePrefix + ".*.*.*",
				Destination: events.UsagePrefix + ".{{partition(" + strconv.Itoa(o.UsagePartitions) + ",1,2,3)}}" +
					".{{wildcard(1)}}.{{wildcard(2)}}.{{wildcard(3)}}",
			},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			AllowDirect: true,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        LedgerStream,
			Description: "allot ledger: grants, debits, reservations, quota counters, expiries",
			Subjects:    []string{events.LedgerPrefix + ".*.*.*"},
			Metadata:    map[string]string{quotaLanesKey: strconv.Itoa(max(o.QuotaLanes, 1))},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			AllowDirect: true,
		},
		{
			Name:        OutboxStream,
			Description: "allot webhook events waiting for delivery, one subject per customer (ordered)",
			Subjects:    []string{events.OutboxPrefix + ".*.*.*"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    o.Replicas,
			Duplicates:  o.DedupWindow,
			MaxAge:      30 * 24 * time.Hour,
			AllowDirect: true,
		},
		{
			Name:              WebhookLogStream,
			Description:       "allot webhook delivery attempts and dead letters, per endpoint",
			Subjects:          []string{"allot.whlog.>"},
			Storage:           jetstream.FileStorage,
			Retention:         jetstream.LimitsPolicy,
			Replicas:          o.Replicas,
			MaxMsgsPerSubject: 1000,
			MaxAge:            30 * 24 * time.Hour,
			AllowDirect:       true,
		},
		{
			Name:        ConfigStream,
			Description: "allot configuration changes: keys, meters, rules, quotas, features, plans",
			Subjects:    []string{events.ConfigPrefix + ".>"},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			Replicas:    o.Replicas,
			Duplicates:  2 * time.Minute,
			AllowDirect: true,
		},
	}
}

// ErrPartitionsFixed is returned when a different usage partition count is asked of an existing
// stream: retrying cannot help.
var ErrPartitionsFixed = errors.New("the usage partition count is fixed when the stream is created")

// ErrQuotaLanesFixed is returned when a different number of quota lanes is asked of an
// existing ledger stream.
var ErrQuotaLanesFixed = errors.New("the number of quota lanes is fixed when the ledger stream is created")

// EnsureStreams creates allot's streams or updates them in place. The usage partition count
// is part of the stored subjects, so changing it on an existing stream is refused: customers'
// events would move partition and lose their order. The number of quota lanes likewise: a
// customer's quota commands would move lane, and two processes could admit on two lanes.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	for _, cfg := range StreamConfigs(o) {
		s, err := js.Stream(ctx, cfg.Name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			if _, err := js.CreateStream(ctx, cfg); err != nil {
				return fmt.Errorf("creating stream %s: %w", cfg.Name, err)
			}
			continue
		case err != nil:
			return fmt.Errorf("looking up stream %s: %w", cfg.Name, err)
		}
		have := s.CachedInfo().Config
		if cfg.SubjectTransform != nil && have.SubjectTransform != nil &&
			have.SubjectTransform.Destination != cfg.SubjectTransform.Destination {
			return fmt.Errorf("%w: stream %s is partitioned as %q; refusing to change it to %q",
				ErrPartitionsFixed, cfg.Name, have.SubjectTransform.Destination, cfg.SubjectTransform.Destination)
		}
		if cfg.Name == LedgerStream {
			// A stream from before quota lanes has one, as QuotaLanes reads it: stored here as
			// such whatever this process asks, so that processes starting at once on it cannot
			// each store (and read back) a number of their own, the last write winning.
			stored, ok := have.Metadata[quotaLanesKey]
			if !ok {
				stored = "1"
			}
			if o.QuotaLanes > 0 && stored != strconv.Itoa(o.QuotaLanes) {
				return fmt.Errorf("%w: stream %s has %s; refusing to change it to %d", ErrQuotaLanesFixed, cfg.Name, stored, o.QuotaLanes)
			}
			cfg.Metadata[quotaLanesKey] = stored
			for k, v := range have.Metadata {
				if _, ours := cfg.Metadata[k]; !ours {
					cfg.Metadata[k] = v // the server's own entries, and anyone else's
				}
			}
		}
		// Never fewer replicas than the stream has: a process started without --replicas (or
		// a tool with the defaults) must not quietly turn an R3 stream into an R1 one.
		cfg.Replicas = max(cfg.Replicas, have.Replicas)
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return fmt.Errorf("updating stream %s: %w", cfg.Name, err)
		}
	}
	return nil
}

// keptReplicas is want, or more when the stream behind a bucket (KV_…, OBJ_…) already has more
// (see EnsureStreams).
func keptReplicas(ctx context.Context, js jetstream.JetStream, stream string, want int) int {
	if s, err := js.Stream(ctx, stream); err == nil {
		return max(want, s.CachedInfo().Config.Replicas)
	}
	return want
}

// SnapshotBucket is the object store where folds keep their snapshots (state plus the stream
// sequence it covers).
const SnapshotBucket = "ALLOT_SNAPSHOTS"

// EnsureSnapshotStore creates or opens the snapshot object store.
func EnsureSnapshotStore(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.ObjectStore, error) {
	o = o.withDefaults()
	os, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      SnapshotBucket,
		Description: "allot projection and rating snapshots",
		Storage:     jetstream.FileStorage,
		Replicas:    keptReplicas(ctx, js, "OBJ_"+SnapshotBucket, o.Replicas),
	})
	if err != nil {
		return nil, fmt.Errorf("opening snapshot store: %w", err)
	}
	return os, nil
}

// UsagePartitions reads the partition count the usage stream was created with.
func UsagePartitions(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, UsageStream)
	if err != nil {
		return 0, err
	}
	tr := s.CachedInfo().Config.SubjectTransform
	if tr == nil {
		return 0, fmt.Errorf("stream %s has no partitioning transform", UsageStream)
	}
	var n int
	i := strings.Index(tr.Destination, "{{partition(")
	if i < 0 {
		return 0, fmt.Errorf("stream %s: cannot read partitions from %q", UsageStream, tr.Destination)
	}
	if _, err := fmt.Sscanf(tr.Destination[i+len("{{partition("):], "%d,", &n); err != nil || n <= 0 {
		return 0, fmt.Errorf("stream %s: cannot read partitions from %q", UsageStream, tr.Destination)
	}
	return n, nil
}

// QuotaLanes reads the number of quota lanes the ledger stream was created with (1 for a
// stream older than lanes).
func QuotaLanes(ctx context.Context, js jetstream.JetStream) (int, error) {
	s, err := js.Stream(ctx, LedgerStream)
	if err != nil {
		return 0, err
	}
	v, ok := s.CachedInfo().Config.Metadata[quotaLanesKey]
	if !ok {
		return 1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("stream %s: metadata %s=%q is not a number of lanes", LedgerStream, quotaLanesKey, v)
	}
	return n, nil
}

// IdempotencyBucket keeps Idempotency-Key records for at least IdempotencyTTL.
const IdempotencyBucket = "ALLOT_IDEMPOTENCY"

// IdempotencyTTL is how long an Idempotency-Key is remembered.
const IdempotencyTTL = 24 * time.Hour

// EnsureIdempotencyStore creates or opens the idempotency key-value bucket.
func EnsureIdempotencyStore(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, o, "idempotency store", jetstream.KeyValueConfig{
		Bucket:       IdempotencyBucket,
		Description:  "allot Idempotency-Key records (request hash and stored response)",
		TTL:          IdempotencyTTL,
		MaxValueSize: 1 << 20,
	})
}

// ensureBucket creates or updates a file-backed key-value bucket, never with fewer replicas
// than it has (EnsureStreams); what names it in the error.
func ensureBucket(ctx context.Context, js jetstream.JetStream, o StreamOptions, what string, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	o = o.withDefaults()
	cfg.Storage = jetstream.FileStorage
	cfg.Replicas = keptReplicas(ctx, js, "KV_"+cfg.Bucket, o.Replicas)
	kv, err := js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening the %s: %w", what, err)
	}
	return kv, nil
}

// NotifiedBucket remembers the notifications that must go out once per quota window
// (quota.exceeded), each key until its window ends: the outbox's duplicate window (the dedup
// window, an hour by default) is shorter than a day's, a week's or a month's.
const NotifiedBucket = "ALLOT_NOTIFIED"

// EnsureNotifiedStore creates or opens the NotifiedBucket (per-key time to live).
func EnsureNotifiedStore(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, o, "notified-once store", jetstream.KeyValueConfig{
		Bucket:         NotifiedBucket,
		Description:    "allot notifications sent once per quota window, each kept until its window ends",
		LimitMarkerTTL: time.Minute, // what lets keys carry a time to live of their own
	})
}

// WebhookStateBucket keeps the dispatcher's progress: attempts per delivery, done markers,
// per-customer delivery sequences.
const WebhookStateBucket = "ALLOT_WEBHOOKS"

// EnsureWebhookState creates or opens the dispatcher's key-value bucket.
func EnsureWebhookState(ctx context.Context, js jetstream.JetStream, o StreamOptions) (jetstream.KeyValue, error) {
	return ensureBucket(ctx, js, o, "webhook state", jetstream.KeyValueConfig{Bucket: WebhookStateBucket, Description: "allot webhook dispatcher state"})
}

// DropOrdered deletes the server's side of an ordered consumer that is done reading. Left, it
// lingers on the stream for its inactivity threshold (five minutes): every replay, and every
// `bench replay` round, left its consumers behind. Best effort: an error leaves it to the
// threshold.
func DropOrdered(ctx context.Context, js jetstream.JetStream, stream string, cons jetstream.Consumer) {
	if info := cons.CachedInfo(); info != nil && info.Name != "" {
		js.DeleteConsumer(context.WithoutCancel(ctx), stream, info.Name)
	}
}
