package main

import (
	"encoding/json"
	"strings"
	"testing"

	"ratelab/load"
)

// TestBulkBody checks that the bulk request's body is JSON built by the
// encoder (it was pasted together with Sprintf): every distinct id once,
// quotes in an id escaped, the text template left for the engine.
func TestBulkBody(t *testing.T) {
	data, err := load.ReadData(strings.NewReader("scriptId\na\nb\na\n\"c\"\"q\"\n"), load.DataShared)
	if err != nil {
		t.Fatal(err)
	}
	body, n, err := bulkBody(data)
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Scripts []struct{ ID, Name, Text string }
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("body is not JSON: %v\n%s", err, body)
	}
	var ids []string
	for _, s := range doc.Scripts {
		ids = append(ids, s.ID)
		if s.Text != "bulk update {{.Seq}} at {{now}}" || s.Name == "" {
			t.Errorf("item %+v", s)
		}
	}
	if n != 3 || strings.Join(ids, ",") != `a,b,c"q` {
		t.Fatalf("%d items %q", n, ids)
	}
	if _, err := (&load.Scenario{Requests: []load.RequestSpec{{Method: "POST", URL: "http://127.0.0.1:1/", Body: body}}}).Compile(nil); err != nil {
		t.Fatalf("the body is not a template the engine runs: %v", err)
	}
}
