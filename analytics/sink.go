package analytics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/allot-dev/allot/events"
	"github.com/allot-dev/allot/projector"
)

// MeterSource gives the meters that count a type of event.
type MeterSource interface {
	MetersFor(scope events.Scope, eventType string) []events.Meter
}

// Stats are a sink's running figures, for /metrics and the bench.
type Stats struct {
	Rows, Batches, Errors atomic.Int64
	Seq                   atomic.Uint64 // last stream sequence in ClickHouse
	LagNanos              atomic.Int64  // stream timestamp of a batch's first message → its insert done
	// PendingSince is the stream timestamp (Unix nanoseconds) of the oldest message read but
	// not yet in ClickHouse, 0 when none: while inserts fail, the lag keeps growing from it.
	PendingSince atomic.Int64
	// Unstorable counts what ClickHouse's columns cannot hold and the sink left out: an event
	// time outside DateTime's 1970-2105 (the row), a quantity of 10^29 or more (that value).
	// Written as they were, the driver refused the batch and the sink retried it for ever,
	// and nothing after it reached ClickHouse.
	Unstorable atomic.Int64
}

// DateTime holds [1970-01-01 00:00:00, 2106-01-01 00:00:00) UTC — its 32 bits reach 2106-02-07,
// but ClickHouse 18.16's date tables end with 2105, and a later time read back wrapped to 1970 —
// and Decimal128(9) holds 29 digits before the point.
var (
	maxDateTime   = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
	maxChQuantity = decimal.New(1, 29)
)

// storableTime reports whether a DateTime column can hold t.
func storableTime(t time.Time) bool { return t.Unix() >= 0 && t.Before(maxDateTime) }

// storableQuantity is q for a Decimal128(9) column, and whether it fits.
func storableQuantity(q events.Decimal) (decimal.Decimal, bool) {
	d := q.Underlying()
	return d, d.Abs().LessThan(maxChQuantity)
}

// Lag is how far ClickHouse is behind: since the oldest message waiting to be inserted, or —
// with none waiting — what the last batch took. (LagNanos alone stayed at its last healthy
// value through an outage, and an alert on it never fired.)
func (st *Stats) Lag(now time.Time) time.Duration {
	if p := st.PendingSince.Load(); p != 0 {
		return now.Sub(time.Unix(0, p))
	}
	return time.Duration(st.LagNanos.Load())
}

// Sink copies the usage and ledger streams into ClickHouse.
type Sink struct {
	JS           jetstream.JetStream
	CH           driver.Conn
	Meters       MeterSource
	UsageStream  string
	LedgerStream string
	Batch        int           // rows per insert at most; default 10,000
	FlushEvery   time.Duration // default 200 ms
	// Snapshots, when set, is where the ledger projection keeps its snapshot: the ledger copy
	// starts its fold there when ClickHouse already holds everything up to it.
	Snapshots jetstream.ObjectStore
	Log       *slog.Logger
	Usage     Stats
	Ledger    Stats
}

// Run sinks both streams until ctx ends, retrying with backoff whenever ClickHouse or NATS
// fails; it always resumes from what ClickHouse holds.
func (s *Sink) Run(ctx context.Context) error {
	return s.RunConfirmed(ctx, nil)
}

// RunConfirmed is Run for a sink that runs under a lease: confirm, when not nil, is called
// right before every insert (bus.Hold.Confirm), and an error from it stops the sink before the
// insert. Another sink that took the lease over may be inserting the same rows: reading what
// ClickHouse holds and inserting the rest is safe from one sink at a time, not from two.
func (s *Sink) RunConfirmed(ctx context.Context, confirm func(context.Context) error) error {
	var wg sync.WaitGroup
	for _, part := range []struct {
		name string
		run  func(context.Context, func(context.Context) error) error
		st   *Stats
	}{{"usage", s.runUsage, &s.Usage}, {"ledger", s.runLedger, &s.Ledger}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			backoff := 200 * time.Millisecond
			for ctx.Err() == nil {
				err := part.run(ctx, confirm)
				if ctx.Err() != nil {
					return
				}
				if errors.Is(err, errNotHolder) {
					s.Log.Warn("clickhouse sink stopped: another process may hold its lease", "stream", part.name, "err", err)
					return
				}
				part.st.Errors.Add(1)
				s.Log.Warn("clickhouse sink restarting from what ClickHouse holds", "stream", part.name, "err", err, "in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return
				}
				backoff = min(backoff*2, 10*time.Second)
			}
		}()
	}
	wg.Wait()
	return nil
}

// maxSeqIn is the highest sequence among the rows of one month (yyyymm) partition of table,
// partitioned by column: a query the partition's time range prunes to that partition.
func (s *Sink) maxSeqIn(ctx context.Context, table, column string, month int) (uint64, error) {
	if month < 197001 || month >= 210601 {
		// Outside what a DateTime holds, where ClickHouse's partition and this month may
		// differ: the whole table, as before.
		return s.maxSeq(ctx, table)
	}
	from := time.Date(month/100, time.Month(month%100), 1, 0, 0, 0, 0, time.UTC)
	to := from.AddDate(0, 1, 0)
	const layout = "2006-01-02 15:04:05" // the server's time zone is UTC (CheckUTC)
	var v uint64
	q := "SELECT max(seq) FROM " + table + " WHERE " + column + " >= toDateTime('" + from.Format(layout) + "') AND " + column + " < toDateTime('" + to.Format(layout) + "')"
	if err := s.CH.QueryRow(ctx, q).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading max(seq) of %s for %d: %w", table, month, err)
	}
	return v, nil
}

func (s *Sink) maxSeq(ctx context.Context, table string) (uint64, error) {
	var v uint64
	if err := s.CH.QueryRow(ctx, "SELECT max(seq) FROM "+table).Scan(&v); err != nil {
		return 0, fmt.Errorf("reading max(seq) of %s: %w", table, err)
	}
	return v, nil
}

// reader delivers a stream from a sequence in batches: at most max messages, or what arrived
// within flush.
type reader struct {
	it     jetstream.MessagesContext
	max    int
	flush  time.Duration
	js     jetstream.JetStream
	stream string
	last   uint64    // last sequence delivered
	moved  time.Time // when a message last arrived
}

// errStalled restarts a reader whose consumer stopped delivering while the stream grew (a
// cluster node holding it went away).
var errStalled = errors.New("stream consumer stalled")

func (s *Sink) open(ctx context.Context, stream string, from uint64) (*reader, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if from > 1 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, from
	}
	cons, err := s.JS.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(4096))
	if err != nil {
		return nil, err
	}
	b, f := s.Batch, s.FlushEvery
	if b <= 0 {
		b = 10000
	}
	if f <= 0 {
		f = 200 * time.Millisecond
	}
	return &reader{it: it, max: b, flush: f, js: s.JS, stream: stream, last: from - 1, moved: time.Now()}, nil
}

// next returns the next batch (possibly empty when nothing arrived).
func (r *reader) next(ctx context.Context) ([]jetstream.Msg, error) {
	var out []jetstream.Msg
	deadline := time.Now().Add(r.flush)
	for len(out) < r.max {
		wait := time.Until(deadline)
		if wait <= 0 || ctx.Err() != nil {
			break
		}
		m, err := r.it.Next(jetstream.NextMaxWait(wait))
		if err != nil {
			if errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
				break
			}
			return out, err
		}
		out = append(out, m)
		if md, err := m.Metadata(); err == nil {
			r.last = md.Sequence.Stream
		}
		r.moved = time.Now()
	}
	if len(out) == 0 && time.Since(r.moved) > 5*time.Second {
		r.moved = time.Now()
		st, err := r.js.Stream(ctx, r.stream)
		if err != nil {
			return nil, err
		}
		info, err := st.Info(ctx)
		if err != nil {
			return nil, err
		}
		if info.State.LastSeq > r.last {
			return nil, fmt.Errorf("%w: %s at %d, stream at %d", errStalled, r.stream, r.last, info.State.LastSeq)
		}
	}
	return out, nil
}

// run is one contiguous sequence run, all in one table partition (month, as yyyymm): one
// INSERT.
type run struct {
	first, last uint64
	month       int
	rows        [][]any
}

// insert writes the runs in order. Rows at or below what ClickHouse holds are left out — an
// insert that succeeded although its answer was lost, or, during a hand-over, a standby that
// inserted part of a run first — so retries never duplicate. (Every row's first column is its
// stream sequence.)
//
// What ClickHouse holds is read per month partition (partitionColumn is the table's partition
// time column): the highest sequence among the rows of the run's month. That is enough, since
// a row's month follows from its message, so every copy of a row is in one partition, and
// every sink inserts in stream order, so a partition holding sequence n holds every row of
// that partition up to n. Reading max(seq) of the whole table instead scanned every row's seq
// on every batch (seq is not in the sort key); the partition condition limits it to a month.
func (s *Sink) insert(ctx context.Context, table, columns, partitionColumn string, runs []run, st *Stats, firstTime time.Time) error {
	heldIn := map[int]uint64{}
	for _, r := range runs {
		held, ok := heldIn[r.month]
		if !ok {
			var err error
			if held, err = s.maxSeqIn(ctx, table, partitionColumn, r.month); err != nil {
				return err
			}
		}
		heldIn[r.month] = max(held, r.last) // after this run, the partition holds through it
		if r.last <= held {
			continue
		}
		rows := r.rows
		if r.first <= held {
			rows = slices.DeleteFunc(slices.Clone(rows), func(row []any) bool { return row[0].(uint64) <= held })
		}
		b, err := s.CH.PrepareBatch(ctx, "INSERT INTO "+table+" ("+columns+")")
		if err != nil {
			return fmt.Errorf("preparing insert into %s: %w", table, err)
		}
		for _, row := range rows {
			if err := b.Append(row...); err != nil {
				return fmt.Errorf("appending to %s at sequence %d: %w", table, r.first, err)
			}
		}
		if err := b.Send(); err != nil {
			return fmt.Errorf("inserting into %s (sequences %d–%d): %w", table, r.first, r.last, err)
		}
		st.Rows.Add(int64(len(rows)))
		st.Batches.Add(1)
		st.Seq.Store(r.last)
	}
	if !firstTime.IsZero() {
		st.LagNanos.Store(int64(time.Since(firstTime)))
	}
	return nil
}

const usageColumns = "seq, partition, product, env, customer, event_id, type, source, event_time, event_time_ns, ingest_time, meters, quantities, properties"

// errNotHolder is why a sink stops whose lease could not be confirmed before an insert.
var errNotHolder = errors.New("the sink's lease could not be confirmed")

func (s *Sink) runUsage(ctx context.Context, confirm func(context.Context) error) error {
	held, err := s.maxSeq(ctx, "usage_events")
	if err != nil {
		return err
	}
	return s.copyStream(ctx, s.UsageStream, held+1, "usage_events", usageColumns, "event_time", &s.Usage, held, confirm,
		func(m jetstream.Msg, md *jetstream.MsgMetadata, b *runs) {
			if row, evTime, ok := s.usageRow(md, m); ok {
				b.add(md.Sequence.Stream, evTime, md.Timestamp, row)
			}
		})
}

// copyStream reads stream from sequence from and, batch by batch, turns messages into rows
// (rowsOf adds them to the batch's runs) and inserts them into table. held is what the table
// already holds, for the counters; confirm, when not nil, is called before each insert.
func (s *Sink) copyStream(ctx context.Context, stream string, from uint64, table, columns, partitionColumn string, st *Stats, held uint64,
	confirm func(context.Context) error, rowsOf func(m jetstream.Msg, md *jetstream.MsgMetadata, b *runs)) error {
	st.Seq.Store(held)
	rd, err := s.open(ctx, stream, from)
	if err != nil {
		return err
	}
	defer rd.it.Stop()
	for ctx.Err() == nil {
		msgs, err := rd.next(ctx)
		if err != nil {
			return err
		}
		if len(msgs) == 0 {
			continue
		}
		b := runs{max: rd.max}
		for _, m := range msgs {
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			rowsOf(m, md, &b)
		}
		if !b.firstTime.IsZero() && st.PendingSince.Load() == 0 {
			st.PendingSince.Store(b.firstTime.UnixNano()) // kept through a failed insert and the restart
		}
		if confirm != nil {
			if err := confirm(ctx); err != nil {
				return fmt.Errorf("%w: %w", errNotHolder, err)
			}
		}
		if err := s.insert(ctx, table, columns, partitionColumn, b.runs, st, b.firstTime); err != nil {
			return err
		}
		st.PendingSince.Store(0)
	}
	return nil
}

// runs groups a batch's rows into runs: consecutive stream sequences whose rows all go to one
// month partition, at most max rows each.
type runs struct {
	runs      []run
	month     int
	max       int
	firstTime time.Time // when the batch's first row's message was stored, for the lag
}

// add appends the rows of the message at seq, stored at stored, to the run of partition's
// month.
func (b *runs) add(seq uint64, partition, stored time.Time, rows ...[]any) {
	if len(rows) == 0 {
		return
	}
	if b.firstTime.IsZero() {
		b.firstTime = stored
	}
	partition = partition.UTC()
	month := partition.Year()*100 + int(partition.Month())
	if len(b.runs) == 0 || month != b.month || len(b.runs[len(b.runs)-1].rows) >= b.max {
		b.runs = append(b.runs, run{first: seq, month: month})
		b.month = month
	}
	r := &b.runs[len(b.runs)-1]
	r.last = seq
	r.rows = append(r.rows, rows...)
}

func (s *Sink) usageRow(md *jetstream.MsgMetadata, m jetstream.Msg) ([]any, time.Time, bool) {
	addr, err := events.ParseUsageSubject(m.Subject())
	if err != nil {
		return nil, time.Time{}, false
	}
	ev, err := events.DecodeUsage(m.Data())
	if err != nil {
		return nil, time.Time{}, false
	}
	if ev.Time.IsZero() {
		ev.Time = md.Timestamp
	}
	ev.Time = ev.Time.UTC()
	scope := events.Scope{Product: addr.Product, Env: addr.Env}
	meters := []string{}
	qs := []decimal.Decimal{}
	for _, mt := range s.Meters.MetersFor(scope, ev.Type) {
		if !mt.Matches(ev.Type, ev.Data) {
			continue
		}
		q := events.DecimalFromInt(1)
		if mt.NumericValue() {
			d, err := events.DecimalFromJSON(ev.Data[mt.ValueProperty])
			if err != nil {
				continue
			}
			q = d
		}
		cq, ok := storableQuantity(q)
		if !ok {
			s.Usage.Unstorable.Add(1)
			s.Log.Warn("usage quantity too large for ClickHouse; left out of the row", "seq", md.Sequence.Stream, "event", ev.ID, "meter", mt.Key)
			continue
		}
		meters, qs = append(meters, mt.Key), append(qs, cq)
	}
	if !storableTime(ev.Time) {
		s.Usage.Unstorable.Add(1)
		s.Log.Warn("usage event time outside ClickHouse's DateTime range; row left out", "seq", md.Sequence.Stream, "event", ev.ID, "time", ev.Time)
		return nil, time.Time{}, false
	}
	props := []byte("{}")
	if len(ev.Data) > 0 {
		if b, err := json.Marshal(topLevelProperties(ev.Data)); err == nil {
			props = b
		}
	}
	return []any{md.Sequence.Stream, uint16(max(addr.Partition, 0)), addr.Product, addr.Env, ev.Customer, ev.ID, ev.Type, ev.Source,
		ev.Time.Truncate(time.Second), uint32(ev.Time.Nanosecond()), md.Timestamp.UTC().Truncate(time.Second), meters, qs, string(props)}, ev.Time, true
}

// topLevelProperties is data with each nested object or array replaced by its JSON text, as a
// string. ClickHouse 18.16 reads properties with visitParamExtract*, which take the first
// member of the name at any depth: {"a":{"user":"q"},"user":"x"} read "q" for user, so
// unique_count and group_by disagreed with rating, which reads the top level only.
func topLevelProperties(data map[string]any) map[string]any {
	nested := false
	for _, v := range data {
		switch v.(type) {
		case map[string]any, []any:
			nested = true
		}
	}
	if !nested {
		return data
	}
	out := make(map[string]any, len(data))
	for k, v := range data {
		switch v.(type) {
		case map[string]any, []any:
			if b, err := json.Marshal(v); err == nil {
				v = string(b)
			}
		}
		out[k] = v
	}
	return out
}

const ledgerColumns = "seq, item, product, env, customer, type, kind, entry_time, recorded_time, amount_micro, rule, rule_version, event_id, quantity, block, source, reservation, quota"

func (s *Sink) runLedger(ctx context.Context, confirm func(context.Context) error) error {
	held, err := s.maxSeq(ctx, "ledger_entries")
	if err != nil {
		return err
	}
	// Allocations are decided by the fold, so the sink folds the ledger itself: silently up to
	// what ClickHouse holds (from the projection's snapshot when it can), then writing rows.
	fold, from, err := projector.FoldFrom(ctx, s.Snapshots, held)
	if err != nil {
		return err
	}
	return s.copyStream(ctx, s.LedgerStream, from, "ledger_entries", ledgerColumns, "recorded_time", &s.Ledger, held, confirm,
		func(m jetstream.Msg, md *jetstream.MsgMetadata, b *runs) {
			seq := md.Sequence.Stream
			typ := m.Headers().Get(events.HeaderType)
			applied, err := fold.ApplyItems(seq, m.Subject(), typ, m.Data())
			if err != nil {
				s.Log.Warn("unreadable ledger entry", "seq", seq, "err", err)
				return
			}
			if seq <= s.Ledger.Seq.Load() {
				return // ClickHouse has it
			}
			b.add(seq, md.Timestamp, md.Timestamp, ledgerRows(seq, m.Subject(), typ, m.Data(), md.Timestamp.UTC(), applied, &s.Ledger.Unstorable)...)
		})
}

// ledgerRow is one row of ledger_entries before it is flattened for the driver.
type ledgerRow struct {
	customer                                                    string // the entry's own when empty (a quota lane's entries name theirs)
	typ, kind, rule, eventID, block, source, reservation, quota string
	entry                                                       time.Time
	amount                                                      events.Credits
	version                                                     uint32
	quantity                                                    events.Decimal
}

func ledgerRows(seq uint64, subject, typ string, data []byte, recorded time.Time, applied []projector.Applied, unstorable *atomic.Int64) [][]any {
	addr, err := events.ParseLedgerSubject(subject)
	if err != nil {
		return nil
	}
	var rs []ledgerRow
	// An item the projection passed over (a retried grant whose block exists, a second expiry,
	// a release of a hold that had ended) moved nothing: no row, or the balance sheet and
	// reservation queries counted it twice.
	skipped := func(i int) bool { return i < len(applied) && applied[i].Skipped }
	switch typ {
	case events.TypeCreditsGranted, events.TypeCreditsExpired, events.TypeReservationCreated, events.TypeReservationCommitted,
		events.TypeReservationReleased, events.TypeReservationExpired,
		events.TypeSubscriptionStarted, events.TypeSubscriptionRenewed, events.TypeSubscriptionCanceled:
		if len(applied) == 1 && skipped(0) {
			return nil
		}
	}
	allocs := func(i int, at time.Time) {
		if i >= len(applied) {
			return
		}
		for j, al := range applied[i].Allocations {
			src := ""
			if j < len(applied[i].Sources) {
				src = applied[i].Sources[j]
			}
			rs = append(rs, ledgerRow{typ: "allocation", block: al.Block, source: src, amount: al.Amount, entry: at})
		}
	}
	switch typ {
	case events.TypeUsageRated:
		r, err := events.DecodeUsageRated(data)
		if err != nil {
			return nil
		}
		for i, d := range r.Debits {
			if i < len(applied) && applied[i].Skipped {
				continue // a copy a re-rate wrote: counted once
			}
			rs = append(rs, ledgerRow{typ: events.TypeUsageDebited, kind: d.Kind, rule: d.Rule, version: uint32(d.RuleVersion), eventID: d.EventID,
				quantity: d.Quantity, amount: d.Amount, entry: d.EventTime})
			allocs(i, d.EventTime)
		}
		for j, u := range r.Unrated {
			if k := len(r.Debits) + j; k < len(applied) && applied[k].Skipped {
				continue
			}
			rs = append(rs, ledgerRow{typ: events.TypeUsageUnrated, eventID: u.EventID, entry: u.EventTime, kind: joinReasons(u.Reasons)})
		}
		for j, q := range r.Quotas {
			if k := len(r.Debits) + len(r.Unrated) + j; k < len(applied) && applied[k].Skipped {
				continue // a re-rate's copy: counted once, as in the projection
			}
			rs = append(rs, ledgerRow{typ: "quota.used", quota: q.Quota, quantity: q.Amount, entry: q.At, eventID: ""})
		}
	case events.TypeCreditsGranted:
		var g events.CreditsGranted
		if json.Unmarshal(data, &g) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{typ: typ, block: g.Block, source: g.Source, amount: g.Amount, entry: g.At})
	case events.TypeCreditsExpired:
		var e events.CreditsExpired
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{typ: typ, block: e.Block, amount: e.Amount, entry: e.At})
	case events.TypeReservationCreated:
		var e events.ReservationCreated
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{typ: typ, reservation: e.Reservation, amount: e.Amount, entry: e.At})
	case events.TypeReservationsCreated: // a row per hold, as if each had been written alone
		e, err := events.DecodeReservationsCreated(data)
		if err != nil {
			return nil
		}
		for i, r := range e.Reservations {
			if skipped(i) {
				continue
			}
			rs = append(rs, ledgerRow{typ: events.TypeReservationCreated, reservation: r.Reservation, amount: r.Amount, entry: r.At})
		}
	case events.TypeReservationCommitted:
		var e events.ReservationCommitted
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{typ: typ, reservation: e.Reservation, amount: e.Amount, entry: e.At})
		allocs(0, e.At)
	case events.TypeReservationReleased, events.TypeReservationExpired:
		var e events.ReservationReleased
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{typ: typ, reservation: e.Reservation, entry: e.At})
	case events.TypeQuotaIncremented:
		e, err := events.DecodeQuotaIncremented(data)
		if err != nil {
			return nil
		}
		rs = incrementRows(rs, e)
	case events.TypeQuotaIncrements: // a quota lane's batch: rows as if each had been written alone
		e, err := events.DecodeQuotaIncrements(data)
		if err != nil {
			return nil
		}
		for _, inc := range e.Increments {
			rs = incrementRows(rs, inc)
		}
	case events.TypeQuotaReset:
		var e events.QuotaReset
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{customer: e.Customer, typ: typ, quota: e.Quota, entry: e.At})
	case events.TypeQuotaAdjusted:
		var e events.QuotaAdjusted
		if json.Unmarshal(data, &e) != nil {
			return nil
		}
		rs = append(rs, ledgerRow{customer: e.Customer, typ: typ, quota: e.Quota, quantity: e.Amount, entry: e.At})
	default:
		rs = append(rs, ledgerRow{typ: typ, entry: recorded})
	}
	out := make([][]any, 0, len(rs))
	for i, r := range rs {
		entry := r.entry.UTC()
		if entry.IsZero() {
			entry = recorded
		}
		q, ok := storableQuantity(r.quantity)
		if !ok || !storableTime(entry) {
			unstorable.Add(1)
			continue // what ClickHouse cannot hold (see Stats.Unstorable)
		}
		customer := addr.Customer
		if addr.Lane != "" {
			customer = r.customer // on a customer's own subject, the subject says who
		}
		out = append(out, []any{seq, uint32(i), addr.Product, addr.Env, customer, r.typ, r.kind, entry.Truncate(time.Second), recorded.Truncate(time.Second),
			int64(r.amount), r.rule, r.version, r.eventID, q, r.block, r.source, r.reservation, r.quota})
	}
	return out
}

// incrementRows are the rows of one customer's increment: one per item (an entry may hold
// several requests' increments: group commit).
func incrementRows(rs []ledgerRow, e events.QuotaIncremented) []ledgerRow {
	for _, it := range e.Items {
		at := it.At
		if at.IsZero() {
			at = e.At
		}
		rs = append(rs, ledgerRow{customer: e.Customer, typ: events.TypeQuotaIncremented, quota: it.Quota, quantity: it.Amount, entry: at})
	}
	return rs
}

func joinReasons(rs []string) string {
	out := ""
	for i, r := range rs {
		if i > 0 {
			out += ","
		}
		out += r
	}
	return out
}
