package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"ratelab"
	"ratelab/wire"
)

// FuzzDecodeBody feeds arbitrary bytes to the request decoder for the
// PUT and bulk bodies: it never panics, every failure is a 400 or 413 in
// the error shape, and what it accepts survives a JSON round trip.
func FuzzDecodeBody(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a","text":"b"}`, `{"name":"a","version":3}`, `{"id":"x","name":"a","text":"","version":1}`,
		`{"scripts":[{"id":"a","name":"b"}]}`, `{"name":`, `{"name":"a"} {}`, `{"nme":"a"}`, `[]`, `null`,
		`{"version":"1"}`, `{"version":1e400}`, "\xff", `{"name":"\ud800"}`, strings.Repeat(`{"a":`, 100),
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, target := range []func() any{func() any { return new(wire.ScriptPut) }, func() any { return new(wire.BulkRequest) }} {
			v := target()
			err := decodeBody(http.MaxBytesReader(nil, io.NopCloser(bytes.NewReader(data)), 4096), v)
			if err != nil {
				code := ratelab.ErrorCode(err)
				if code != ratelab.EINVALID && code != ratelab.ETOOLARGE {
					t.Fatalf("%q: code %q (%v)", data, code, err)
				}
				if ratelab.ErrorMessage(err) == "Internal error." {
					t.Fatalf("%q: error without a message: %v", data, err)
				}
				if code == ratelab.ETOOLARGE && len(data) <= 4096 {
					t.Fatalf("%q: 413 for %d bytes", data, len(data))
				}
				continue
			}
			again := target()
			enc, merr := json.Marshal(v)
			if merr != nil {
				t.Fatalf("%q: accepted but cannot re-encode: %v", data, merr)
			}
			if err := decodeBody(bytes.NewReader(enc), again); err != nil {
				t.Fatalf("%q: re-encoded %s rejected: %v", data, enc, err)
			}
			enc2, _ := json.Marshal(again)
			if !bytes.Equal(enc, enc2) {
				t.Fatalf("round trip %s → %s", enc, enc2)
			}
		}
	})
}

func TestParseIfMatch(t *testing.T) {
	for h, want := range map[string]struct {
		m  string
		ok bool
	}{
		``: {"", false}, `"3"`: {"[3]", true}, `W/"4"`: {"[4]", true}, `*`: {"*", true}, `"x"`: {"[]", true},
		`"0"`: {"[]", true}, `3`: {"[]", true}, `"a", "7"`: {"[7]", true}, ` "5" `: {"[5]", true},
		`"9", W/"5", "2"`: {"[9 5 2]", true},
	} {
		m, ok := parseIfMatch(h)
		got := fmt.Sprint(m.versions)
		if m.any {
			got = "*"
		}
		if !ok {
			got = ""
		}
		if got != want.m || ok != want.ok {
			t.Errorf("parseIfMatch(%q) = %s, %v; want %s, %v", h, got, ok, want.m, want.ok)
		}
	}
}
