package events

import (
	"github.com/allot-dev/allot/internal/plainjson"

	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// TypeUsageRecorded names a usage event on the usage stream.
const TypeUsageRecorded = "usage.recorded.v1"

// MaxFutureSkew is how far ahead of the receiving server's clock an event's time may be:
// ingest refuses later ones. Producers' clocks drift a little; an event dated hours ahead is
// a bug, and counting it would open windows that do not exist yet — quota state keeps a
// bounded number of windows and may forget any that has surely ended, which it can only
// tell if event times are never further ahead than this.
const MaxFutureSkew = 5 * time.Minute

// Usage is one usage event as stored on the usage stream. The product and env are not in the
// body: the subject carries them, and a producer publishing straight to JetStream could not be
// trusted to repeat them consistently. The ingest time is the stream's own message timestamp.
type Usage struct {
	ID       string         `json:"id"`
	Type     string         `json:"type"`
	Customer string         `json:"customer"`
	Time     time.Time      `json:"time"`
	Source   string         `json:"source,omitempty"`
	Data     map[string]any `json:"data,omitempty"`
}

// Encode returns the canonical JSON of u (see AppendJSON).
func (u Usage) Encode() ([]byte, error) {
	return u.AppendJSON(make([]byte, 0, 256))
}

// DecodeUsage reads a usage event, keeping numbers in data exact (json.Number).
func DecodeUsage(b []byte) (Usage, error) {
	return decodeUsage(b, nil, nil, nil)
}

// UsageDecoder is DecodeUsage for one goroutine that decodes event after event (a rating
// partition): property names, short values, types, sources and customers come out as one
// shared copy each instead of a new one per event (plainjson.Interner), which is most of what
// decoding an event allocated. The zero value is ready.
type UsageDecoder struct {
	// Transient makes each event decoded valid only until the decoder reads the next one, and
	// only while the bytes it was read from are unchanged: its Data is one map, emptied and
	// filled again by every decode, and its ID, Source and the numbers in Data are those
	// bytes, not copies. For a reader done with each event before it reads the next, keeping
	// nothing of its data, id or source (a rebuild): they were most of what decoding an event
	// allocated.
	Transient bool

	intern plainjson.Interner
	data   map[string]any
}

// Decode is DecodeUsage.
func (d *UsageDecoder) Decode(b []byte) (Usage, error) { return d.DecodeFor(b, nil) }

// PropertyFilter names the properties of an event's data that a reader of events of a type
// reads (nil: all of them).
type PropertyFilter interface {
	Properties(eventType string) []string
}

// DecodeFor is Decode for a reader that reads only the data properties only names for the
// event's type: the others may be left out of Data (they are read, so a malformed one is
// refused as by Decode, but not built). Everything else is as Decode gives it.
func (d *UsageDecoder) DecodeFor(b []byte, only PropertyFilter) (Usage, error) {
	if !d.Transient {
		return decodeUsage(b, &d.intern, only, nil)
	}
	if d.data == nil {
		d.data = make(map[string]any, 4)
	}
	return decodeUsage(b, &d.intern, only, d.data)
}

func decodeUsage(b []byte, in *plainjson.Interner, only PropertyFilter, into map[string]any) (Usage, error) {
	u, err := decodeUsageFast(b, in, only, into)
	if err != nil {
		if u, err = decodeUsageJSON(b); err != nil {
			return Usage{}, err
		}
	}
	if u.ID == "" || u.Type == "" || u.Customer == "" {
		return Usage{}, fmt.Errorf("decoding %s: id, type and customer are required", TypeUsageRecorded)
	}
	return u, nil
}

// decodeUsageJSON is DecodeUsage by encoding/json: the reference the fast path must match.
func decodeUsageJSON(b []byte) (Usage, error) {
	var u Usage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&u); err != nil {
		return Usage{}, fmt.Errorf("decoding %s: %w", TypeUsageRecorded, err)
	}
	return u, nil
}
