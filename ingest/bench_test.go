package ingest

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkParse reads a batch of 500 events shaped like `allot bench pipeline`'s: HTTP
// ingest's CPU per event before publishing.
func BenchmarkParse(b *testing.B) {
	var evs []string
	for i := range 500 {
		evs = append(evs, fmt.Sprintf(`{"id":"q0-%d","type":"llm","customer":"cust-%d","time":"2026-01-01T00:00:%02d.%03dZ","source":"bench","data":{"model":"small","region":"eu-west-1","tokens":%d}}`,
			i, i%1000, i/1000%60, i%1000, 100+i%900))
	}
	body := []byte("[" + strings.Join(evs, ",") + "]")
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		cands, rejs, p := Parse(scope, MediaJSON, body, meters, now)
		if p != nil || len(rejs) > 0 || len(cands) != 500 {
			b.Fatal(p, rejs)
		}
	}
}
