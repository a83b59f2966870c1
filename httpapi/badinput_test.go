package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"ratelab/wire"
)

// TestBadInputTable is the audit's bad-input list (issue 11, "Done when")
// through the real server on SQLite and on PostgreSQL: malformed JSON,
// wrong types, 10 MB bodies, odd ids, 0/51/10,000-item bulks, bad
// If-Match, bad Content-Type, bad queries, oversized request targets and
// headers, what net/http refuses itself, slow headers and bodies, idle
// connections. Every answer the server writes is checked for its status
// and the error shape ({"message","code","status"}, application/json);
// the answers net/http writes itself (doc.go) for their status and plain
// text; the connections it closes without an answer for that.
func TestBadInputTable(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			e := newEnv(t, nil, options{backend: backend, policies: generous(t),
				readHeaderTimeout: 300 * time.Millisecond, readTimeout: time.Second, idleTimeout: 500 * time.Millisecond})
			c := e.client("acme")
			tok := e.token(c)
			const p = "/api/v2/architect/scripts"
			e.do("PUT", p+"/exists", tok, map[string]any{"name": "n", "text": "t"}).want(201)
			const js, form = "application/json", "application/x-www-form-urlencoded"
			ct := func(v string) []string { return []string{"Content-Type", v} }
			big := strings.Repeat("x", 10<<20)
			items := func(n int, id func(int) string) map[string]any {
				var its []map[string]any
				for i := range n {
					its = append(its, map[string]any{"id": id(i), "name": "n"})
				}
				return map[string]any{"scripts": its}
			}
			distinct := func(i int) string { return fmt.Sprint("b", i) }
			for _, tc := range []struct {
				name, method, path string
				body               any
				hdr                []string
				status             int
				code, msg          string
			}{
				// Malformed JSON and wrong types.
				{"truncated JSON", "POST", p, `{"name": "x"`, ct(js), 400, "invalid", "unexpected end"},
				{"JSON syntax", "PUT", p + "/s1", `{"name": x}`, ct(js), 400, "invalid", "Malformed JSON at byte"},
				{"not an object", "POST", p, `[1,2]`, ct(js), 400, "invalid", "want an object"},
				{"name a number", "POST", p, map[string]any{"name": 7}, nil, 400, "invalid", `Field "name": want a string`},
				{"text an array", "PUT", p + "/s1", map[string]any{"name": "n", "text": []int{1}}, nil, 400, "invalid", `Field "text"`},
				{"version a string", "PUT", p + "/s1", map[string]any{"name": "n", "version": "1"}, nil, 400, "invalid", `Field "version": want a number`},
				{"bulk scripts an object", "POST", p + "/bulk", map[string]any{"scripts": map[string]any{}}, nil, 400, "invalid", `Field "scripts": want an array`},
				{"bulk id a number", "POST", p + "/bulk", map[string]any{"scripts": []map[string]any{{"id": 5, "name": "n"}}}, nil, 400, "invalid", `want a string`},
				{"invalid UTF-8", "POST", p, "{\"name\":\"\xff\"}", ct(js), 400, "invalid", "invalid UTF-8"},
				{"NUL in name", "POST", p, map[string]any{"name": "a\x00b"}, nil, 422, "unprocessable", "name"},
				{"NUL in bulk text", "POST", p + "/bulk", map[string]any{"scripts": []map[string]any{{"id": "n1", "name": "n", "text": "a\x00"}}}, nil, 200, "", ""},
				// 10 MB bodies.
				{"10 MB create", "POST", p, `{"name":"n","text":"` + big + `"}`, ct(js), 413, "payload_too_large", "larger than 512000"},
				{"10 MB bulk", "POST", p + "/bulk", `{"scripts":[{"id":"a","name":"` + big + `"}]}`, ct(js), 413, "payload_too_large", "larger than"},
				{"10 MB token form", "POST", "/oauth/token", "grant_type=client_credentials&x=" + big, ct(form), 413, "payload_too_large", "larger than"},
				// Odd ids: the id rule, before any query.
				{"id .", "GET", p + "/%2e", nil, nil, 404, "not_found", "not found"},
				{"id .. PUT", "PUT", p + "/%2e%2e", map[string]any{"name": "n"}, nil, 404, "not_found", "not found"},
				{"id NUL", "GET", p + "/%00", nil, nil, 404, "not_found", "not found"},
				{"id a NUL b PUT", "PUT", p + "/a%00b", map[string]any{"name": "n"}, nil, 404, "not_found", "not found"},
				{"id ff versions", "GET", p + "/%ff/versions", nil, nil, 404, "not_found", "not found"},
				{"id ff DELETE", "DELETE", p + "/%ff", nil, nil, 404, "not_found", "not found"},
				{"id with slash", "GET", p + "/a%2Fb", nil, nil, 404, "not_found", "not found"},
				{"id 300 bytes", "PUT", p + "/" + strings.Repeat("i", 300), map[string]any{"name": "n"}, nil, 404, "not_found", "not found"},
				{"token client_id ff", "POST", "/oauth/token", "grant_type=client_credentials&client_id=%ff", ct(form), 401, "unauthorized", "missing"},
				{"token client_id NUL", "POST", "/oauth/token", "grant_type=client_credentials&client_id=a%00b&client_secret=x", ct(form), 401, "unauthorized", "Unknown client or wrong secret."},
				{"token grant type", "POST", "/oauth/token", "grant_type=password", ct(form), 400, "invalid", "grant_type"},
				// Bulk sizes and duplicates.
				{"bulk of 0", "POST", p + "/bulk", map[string]any{"scripts": []any{}}, nil, 422, "unprocessable", "at least one"},
				{"bulk of 51", "POST", p + "/bulk", items(51, distinct), nil, 422, "unprocessable", "holds 51 updates; at most 50"},
				{"bulk of 10,000", "POST", p + "/bulk", items(10000, distinct), nil, 422, "unprocessable", "holds 10000 updates"},
				{"bulk duplicates", "POST", p + "/bulk", items(50, func(int) string { return "same" }), nil, 422, "unprocessable", `repeated: "same"`},
				// Bad If-Match.
				{"If-Match not a tag", "PUT", p + "/exists", map[string]any{"name": "n"}, []string{"If-Match", "abc"}, 412, "precondition_failed", "does not match the current version 1"},
				{"If-Match zero", "PUT", p + "/exists", map[string]any{"name": "n"}, []string{"If-Match", `"0"`}, 412, "precondition_failed", "does not match"},
				{"If-Match weak garbage", "PUT", p + "/exists", map[string]any{"name": "n"}, []string{"If-Match", `W/"x", "-1"`}, 412, "precondition_failed", "does not match"},
				{"If-Match star, no script", "PUT", p + "/nothing", map[string]any{"name": "n"}, []string{"If-Match", "*"}, 412, "precondition_failed", "does not exist"},
				// Bad Content-Type.
				{"text/plain", "POST", p, `{"name":"n"}`, ct("text/plain"), 415, "unsupported_media_type", `"text/plain" is not supported`},
				{"no Content-Type", "POST", p, `{"name":"n"}`, nil, 415, "unsupported_media_type", "missing"},
				{"malformed Content-Type", "PUT", p + "/s1", `{"name":"n"}`, ct("application/json; charset"), 415, "unsupported_media_type", "not supported"},
				{"form to JSON", "POST", p + "/bulk", `scripts=1`, ct(form), 415, "unsupported_media_type", "want application/json"},
				{"JSON to token", "POST", "/oauth/token", `{"grant_type":"client_credentials"}`, ct(js), 415, "unsupported_media_type", "want application/x-www-form-urlencoded"},
				// Queries, request targets and headers the server answers.
				{"pageSize word", "GET", p + "?pageSize=many", nil, nil, 400, "invalid", "pageSize must be"},
				{"pageNumber 0", "GET", p + "?pageNumber=0", nil, nil, 400, "invalid", "pageNumber must be"},
				{"query escape", "GET", p + "?pageSize=%zz", nil, nil, 400, "invalid", "Malformed query string"},
				{"20 KB target", "GET", p + "/" + strings.Repeat("a", 20<<10), nil, nil, 414, "uri_too_long", "at most 16384"},
				{"100 KB header", "GET", "/healthz", nil, []string{"X-Big", strings.Repeat("h", 100<<10)}, 431, "header_too_large", "at most 65536"},
				{"unknown route", "GET", "/api/v2/nothing", nil, nil, 404, "not_found", "No route"},
				{"wrong method", "PATCH", p + "/s1", nil, nil, 405, "method_not_allowed", "allowed"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					r := e.do(tc.method, tc.path, tok, tc.body, tc.hdr...).want(tc.status)
					if tc.status == 200 {
						// A bulk answers per item: the bad item is a 422 in the error shape.
						var br wire.BulkResponse
						r.decode(&br)
						if len(br.Results) != 1 || br.Results[0].Status != 422 || br.Results[0].Error == nil || br.Results[0].Error.Code != "unprocessable" {
							t.Fatalf("bulk item: %s", r.body)
						}
						return
					}
					b := r.errBody()
					if b.Code != tc.code || !strings.Contains(b.Message, tc.msg) {
						t.Fatalf("code %q message %q, want %q containing %q", b.Code, b.Message, tc.code, tc.msg)
					}
				})
			}
			// What net/http answers itself (doc.go), in plain text: the
			// status, and that it is not the JSON shape by accident. (Its
			// 431 beyond 1 MiB is not here: it closes the connection while
			// the client still writes, so the answer may be lost to a reset.)
			auth := "Authorization: Bearer " + tok + "\r\n"
			for _, tc := range []struct {
				name, raw string
				status    int
			}{
				{"path escape", "GET " + p + "/%zz HTTP/1.1\r\nHost: x\r\n" + auth + "\r\n", 400},
				{"HTTP/2.0 request line", "GET /healthz HTTP/2.0\r\nHost: x\r\n\r\n", 505},
				{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
				{"two Content-Length", "POST " + p + " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400},
				{"control byte in header", "GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400},
				{"Transfer-Encoding gzip", "POST " + p + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
			} {
				t.Run(tc.name, func(t *testing.T) {
					res := rawDo(t, e.srv.Addr(), tc.raw)
					if res.StatusCode != tc.status || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
						t.Fatalf("status %d Content-Type %q, want %d in plain text", res.StatusCode, res.Header.Get("Content-Type"), tc.status)
					}
				})
			}
			t.Run("slow headers", func(t *testing.T) {
				conn := dial(t, e.srv.Addr())
				io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
				closedWithin(t, conn, 3*time.Second)
			})
			t.Run("slow body", func(t *testing.T) {
				conn := dial(t, e.srv.Addr())
				io.WriteString(conn, "PUT "+p+"/slow HTTP/1.1\r\nHost: x\r\n"+auth+"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":")
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				res, err := http.ReadResponse(bufio.NewReader(conn), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer res.Body.Close()
				body, _ := io.ReadAll(res.Body)
				r := &resp{t: t, status: res.StatusCode, header: res.Header, body: body}
				if b := r.want(408).errBody(); b.Code != "request_timeout" {
					t.Fatalf("code %q", b.Code)
				}
			})
			t.Run("idle connection", func(t *testing.T) {
				conn := dial(t, e.srv.Addr())
				io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
				br := bufio.NewReader(conn)
				res, err := http.ReadResponse(br, nil)
				if err != nil || res.StatusCode != 200 {
					t.Fatalf("healthz: %v %v", res, err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				closedWithin(t, conn, 3*time.Second)
			})
		})
	}
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// closedWithin fails unless the server closes conn, without writing a
// byte, within d.
func closedWithin(t *testing.T, conn net.Conn, d time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	n, err := conn.Read(make([]byte, 1))
	if n != 0 || err != io.EOF {
		t.Fatalf("read %d bytes, %v; want the connection closed without an answer", n, err)
	}
}

// rawDo writes raw to a new connection (ignoring a write the server cuts
// short) and reads the response.
func rawDo(t *testing.T, addr, raw string) *http.Response {
	t.Helper()
	conn := dial(t, addr)
	go io.WriteString(conn, raw)
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}
