package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// hostileCase is one malformed or hostile request.
type hostileCase struct {
	name   string
	method string
	path   string
	body   string
	ctype  string            // Content-Type; "" sends application/json
	header map[string]string // extra headers (Authorization overrides the key)
	want   int               // expected status; 0: any 4xx
}

// nested returns a JSON value nested depth levels deep in arrays.
func nested(depth int) string {
	return strings.Repeat("[", depth) + strings.Repeat("]", depth)
}

// nestedObject returns {"a":{"a":…}} depth levels deep.
func nestedObject(depth int) string {
	return strings.Repeat(`{"a":`, depth) + "1" + strings.Repeat("}", depth)
}

func hostileCases() []hostileCase {
	const ok = `"url":"http://example.com/"`
	long := strings.Repeat("a", 10000)
	return []hostileCase{
		// bodies that are not one JSON object
		{name: "empty body", method: "POST", path: "/v1/fetch", body: "", want: 400},
		{name: "null body", method: "POST", path: "/v1/fetch", body: "null", want: 422},
		{name: "array body", method: "POST", path: "/v1/fetch", body: "[]", want: 400},
		{name: "string body", method: "POST", path: "/v1/fetch", body: `"http://example.com/"`, want: 400},
		{name: "number body", method: "POST", path: "/v1/fetch", body: "123", want: 400},
		{name: "truncated object", method: "POST", path: "/v1/fetch", body: `{"url":"http://exa`, want: 400},
		{name: "two objects", method: "POST", path: "/v1/fetch", body: `{` + ok + `}{` + ok + `}`, want: 400},
		{name: "trailing comma", method: "POST", path: "/v1/fetch", body: `{` + ok + `,}`, want: 400},
		{name: "invalid UTF-8 outside strings", method: "POST", path: "/v1/fetch", body: "{" + ok + "}\xff\xfe", want: 400},
		{name: "NUL bytes", method: "POST", path: "/v1/fetch", body: "\x00\x00\x00", want: 400},
		// wrong types, nulls, huge numbers
		{name: "url is a number", method: "POST", path: "/v1/fetch", body: `{"url":5}`, want: 422},
		{name: "url is null", method: "POST", path: "/v1/fetch", body: `{"url":null}`, want: 422},
		{name: "render_js is a string", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"render_js":"yes"}`, want: 422},
		{name: "output is an object", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"output":{"html":true}}`, want: 422},
		{name: "actions is a string", method: "POST", path: "/v1/interact", body: `{` + ok + `,"actions":"click"}`, want: 422},
		{name: "timeout_ms 1e309", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"timeout_ms":1e309}`, want: 422},
		{name: "timeout_ms past int64", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"timeout_ms":99999999999999999999999}`, want: 422},
		{name: "timeout_ms negative", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"timeout_ms":-1}`, want: 422},
		{name: "timeout_ms fraction", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"timeout_ms":1.5}`, want: 422},
		{name: "unknown field", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"evil":true}`, want: 422},
		{name: "invalid UTF-8 in an output name", method: "POST", path: "/v1/fetch", body: `{` + ok + ",\"output\":[\"\xff\xfe\"]}", want: 422},
		{name: "invalid UTF-8 url", method: "POST", path: "/v1/fetch", body: "{\"url\":\"\xff\xfe\"}", want: 422},
		{name: "wait_until is null-ish", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"wait_until":"never"}`, want: 422},
		{name: "50000 actions", method: "POST", path: "/v1/interact", body: `{` + ok + `,"actions":[` + strings.TrimSuffix(strings.Repeat(`{"type":"wait","ms":1},`, 50000), ",") + `]}`, want: 413},
		// nesting and size
		{name: "arrays 10000 deep", method: "POST", path: "/v1/fetch", body: nested(10000), want: 400},
		{name: "metadata 40 deep", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"webhook":{"url":"http://example.com/h","metadata":` + nestedObject(40) + `}}`, want: 400},
		{name: "schema 100 deep", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"extract":{"mode":"selectors","selectors":` + nestedObject(100) + `}}`, want: 400},
		{name: "body of 2 MiB", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"webhook":{"url":"http://example.com/h","metadata":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}}`, want: 413},
		// URLs that must not be fetched
		{name: "file URL", method: "POST", path: "/v1/fetch", body: `{"url":"file:///etc/passwd"}`, want: 422},
		{name: "javascript URL", method: "POST", path: "/v1/fetch", body: `{"url":"javascript:alert(1)"}`, want: 422},
		{name: "gopher URL", method: "POST", path: "/v1/fetch", body: `{"url":"gopher://127.0.0.1:6379/_FLUSHALL"}`, want: 422},
		{name: "credentials in URL", method: "POST", path: "/v1/fetch", body: `{"url":"http://user:pass@example.com/"}`, want: 422},
		{name: "user only in URL", method: "POST", path: "/v1/fetch", body: `{"url":"https://token@example.com/"}`, want: 422},
		{name: "port out of range", method: "POST", path: "/v1/fetch", body: `{"url":"http://example.com:99999/"}`, want: 422},
		{name: "relative URL", method: "POST", path: "/v1/fetch", body: `{"url":"/etc/passwd"}`, want: 422},
		{name: "URL of 10000 chars", method: "POST", path: "/v1/fetch", body: `{"url":"http://example.com/` + strings.Repeat("a", 10000) + `"}`, want: 422},
		{name: "webhook ftp URL", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"webhook":{"url":"ftp://example.com/"}}`, want: 422},
		{name: "webhook credentials", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"webhook":{"url":"https://u:p@example.com/h"}}`, want: 422},
		{name: "navigate to file URL", method: "POST", path: "/v1/interact", body: `{` + ok + `,"actions":[{"type":"navigate","url":"file:///etc/passwd"}]}`, want: 422},
		{name: "session id traversal", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"session":{"id":"../../etc"}}`, want: 422},
		{name: "identity with slash", method: "POST", path: "/v1/fetch", body: `{` + ok + `,"identity":"a/b"}`, want: 422},
		// wrong content types
		{name: "form body", method: "POST", path: "/v1/fetch", body: "url=http%3A%2F%2Fexample.com%2F", ctype: "application/x-www-form-urlencoded", want: 400},
		{name: "text body", method: "POST", path: "/v1/fetch", body: "http://example.com/", ctype: "text/plain", want: 400},
		{name: "xml body", method: "POST", path: "/v1/fetch", body: "<url>http://example.com/</url>", ctype: "application/xml", want: 400},
		{name: "multipart body", method: "POST", path: "/v1/fetch", body: "--x\r\nContent-Disposition: form-data; name=\"url\"\r\n\r\nhttp://example.com/\r\n--x--\r\n", ctype: "multipart/form-data; boundary=x", want: 400},
		// headers
		{name: "Idempotency-Key of 300", method: "POST", path: "/v1/fetch", body: `{` + ok + `}`, header: map[string]string{"Idempotency-Key": strings.Repeat("k", 300)}, want: 422},
		{name: "no key", method: "POST", path: "/v1/fetch", body: `{` + ok + `}`, header: map[string]string{"Authorization": ""}, want: 401},
		{name: "basic auth", method: "POST", path: "/v1/fetch", body: `{` + ok + `}`, header: map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, want: 401},
		{name: "key of 8000", method: "GET", path: "/v1/jobs", header: map[string]string{"Authorization": "Bearer " + strings.Repeat("k", 8000)}, want: 401},
		// routes, methods, query parameters
		{name: "unknown route", method: "GET", path: "/v1/nope", want: 404},
		{name: "unknown top route", method: "GET", path: "/admin/../../etc/passwd", want: 404},
		{name: "wrong method", method: "DELETE", path: "/v1/fetch"},
		{name: "PUT jobs", method: "PUT", path: "/v1/jobs", body: "{}"},
		{name: "limit=-1", method: "GET", path: "/v1/jobs?limit=-1", want: 422},
		{name: "limit=abc", method: "GET", path: "/v1/jobs?limit=abc", want: 422},
		{name: "limit past int64", method: "GET", path: "/v1/jobs?limit=99999999999999999999", want: 422},
		{name: "cursor=garbage", method: "GET", path: "/v1/jobs?cursor=garbage", want: 422},
		{name: "cursor of 5000", method: "GET", path: "/v1/jobs?cursor=" + strings.Repeat("9", 5000), want: 422},
		{name: "status=bogus", method: "GET", path: "/v1/jobs?status=bogus", want: 422},
		{name: "session list limit=0", method: "GET", path: "/v1/sessions?limit=0", want: 422},
		{name: "wait=forever", method: "GET", path: "/v1/jobs/job_00000000000000000000000000?wait=forever", want: 422},
		{name: "wait=-5s", method: "GET", path: "/v1/jobs/job_00000000000000000000000000?wait=-5s", want: 422},
		{name: "wait=NaN", method: "GET", path: "/v1/jobs/job_00000000000000000000000000?wait=NaN", want: 422},
		{name: "wait=1e309", method: "GET", path: "/v1/jobs/job_00000000000000000000000000?wait=1e309", want: 422},
		{name: "submit wait=forever", method: "POST", path: "/v1/fetch?wait=forever", body: `{` + ok + `}`, want: 422},
		// ids
		{name: "job id traversal", method: "GET", path: "/v1/jobs/../../etc/passwd", want: 404},
		{name: "job id encoded traversal", method: "GET", path: "/v1/jobs/%2e%2e%2f%2e%2e%2fetc%2fpasswd", want: 404},
		{name: "job id of 10000", method: "GET", path: "/v1/jobs/job_" + long, want: 404},
		{name: "job id upper case", method: "GET", path: "/v1/jobs/JOB_ABC", want: 404},
		{name: "job id with NUL", method: "GET", path: "/v1/jobs/job_%00", want: 404},
		{name: "job id injection", method: "DELETE", path: "/v1/jobs/job_%27%20OR%201=1", want: 404},
		{name: "job id redis glob", method: "GET", path: "/v1/jobs/job_*", want: 404},
		{name: "deliveries bad id", method: "GET", path: "/v1/jobs/x/deliveries", want: 404},
		{name: "unknown job", method: "GET", path: "/v1/jobs/job_00000000000000000000000000", want: 404},
		{name: "session id slash", method: "GET", path: "/v1/sessions/a%2Fb", want: 404},
		{name: "session id of 200", method: "GET", path: "/v1/sessions/" + strings.Repeat("s", 200), want: 404},
		{name: "session id traversal", method: "DELETE", path: "/v1/sessions/..%2F..%2Fx", want: 404},
		{name: "identity name space", method: "GET", path: "/v1/identities/bad%20name", want: 404},
		{name: "identity name of 10000", method: "GET", path: "/v1/identities/" + long, want: 404},
		{name: "identity array body", method: "PUT", path: "/v1/identities/ok-name", body: "[]", want: 400},
		{name: "identity deep body", method: "PUT", path: "/v1/identities/ok-name", body: nestedObject(64), want: 400},
		{name: "batch id garbage", method: "GET", path: "/v1/batches/not-an-id", want: 404},
		{name: "batch id of 10000", method: "GET", path: "/v1/batches/bat_" + long, want: 404},
		{name: "batch jobs bad cursor", method: "GET", path: "/v1/batches/batch_x/jobs?cursor=garbage&limit=-1"},
		{name: "batch urls not array", method: "POST", path: "/v1/batches", body: `{"urls":"http://example.com/"}`, want: 422},
		{name: "batch deep body", method: "POST", path: "/v1/batches", body: `{"urls":["http://example.com/"],"template":` + nestedObject(64) + `}`, want: 400},
		{name: "batch credentials URL", method: "POST", path: "/v1/batches", body: `{"urls":["http://u:p@example.com/"]}`, want: 422},
		{name: "batch file URL", method: "POST", path: "/v1/batches", body: `{"urls":["file:///etc/passwd"]}`, want: 422},
		{name: "sessions cursor=garbage", method: "GET", path: "/v1/sessions?cursor=garbage", want: 422},
		{name: "batches cursor=garbage", method: "GET", path: "/v1/batches?cursor=garbage&limit=-1", want: 422},
	}
}

// sendHostile sends c to the API and returns the answer.
func sendHostile(t *testing.T, base string, c hostileCase) *http.Response {
	t.Helper()
	var body io.Reader
	if c.body != "" || c.method == "POST" || c.method == "PUT" {
		body = strings.NewReader(c.body)
	}
	req, err := http.NewRequest(c.method, base+c.path, body)
	if err != nil {
		t.Fatalf("build %s %s: %v", c.method, c.path, err)
	}
	req.Header.Set("Authorization", "Bearer "+keyA)
	req.Header.Set("Content-Type", "application/json")
	if c.ctype != "" {
		req.Header.Set("Content-Type", c.ctype)
	}
	for k, v := range c.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", c.method, c.path[:min(len(c.path), 80)], err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(data))
	return resp
}

// TestHostileInput sends malformed and hostile requests to the real API
// binary: none answers 500 and each answer is problem+json with the status
// expected; an oversized header gets 431 and a client that sends its
// headers too slowly is cut off (PAGEFLEET_READ_HEADER_TIMEOUT).
func TestHostileInput(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 2, Env: []string{"PAGEFLEET_READ_HEADER_TIMEOUT=1s"}})
	before := len(e.listJobs(keyA))

	t.Run("table", func(t *testing.T) {
		cases := hostileCases()
		for _, c := range cases {
			resp := sendHostile(t, e.APIURL, c)
			switch {
			case resp.StatusCode >= 500:
				t.Errorf("%s: %d %.200s", c.name, resp.StatusCode, readAll(resp))
				continue
			case c.want != 0 && resp.StatusCode != c.want:
				t.Errorf("%s: status %d, want %d: %.300s", c.name, resp.StatusCode, c.want, readAll(resp))
				continue
			case c.want == 0 && (resp.StatusCode < 400 || resp.StatusCode >= 500):
				t.Errorf("%s: status %d, want a 4xx: %.300s", c.name, resp.StatusCode, readAll(resp))
				continue
			}
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("%s: %d with Content-Type %q, want problem+json", c.name, resp.StatusCode, ct)
				continue
			}
			var p struct {
				Type   string `json:"type"`
				Title  string `json:"title"`
				Status int    `json:"status"`
				Code   string `json:"code"`
			}
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil || p.Status != resp.StatusCode || p.Code == "" || p.Type == "" || p.Title == "" {
				t.Errorf("%s: problem %+v (%v)", c.name, p, err)
			}
		}
		t.Logf("%d malformed requests, none answered 500", len(cases))
		if after := len(e.listJobs(keyA)); after != before {
			t.Errorf("malformed requests created %d jobs", after-before)
		}
		if log := e.api.logText(); strings.Contains(log, `"level":"ERROR"`) {
			t.Errorf("the API logged errors:\n%s", tail(log, 3000))
		}
	})

	t.Run("header too large", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.APIURL+"/v1/jobs", nil)
		req.Header.Set("Authorization", "Bearer "+keyA)
		req.Header.Set("X-Big", strings.Repeat("b", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("status %d, %s; want 431 problem+json", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
	})

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(e.APIURL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: pagefleet\r\n"); err != nil {
			t.Fatal(err)
		}
		closed := make(chan time.Duration, 1)
		go func() {
			// The server never answers a request whose headers did not
			// arrive; it closes the connection.
			b, _ := io.ReadAll(conn)
			if len(b) > 0 && !bytes.HasPrefix(b, []byte("HTTP/1.1 408")) {
				t.Errorf("the server answered a request it never fully got: %q", b)
			}
			closed <- time.Since(start)
		}()
		// One header line every 200 ms, never the blank line: 10 s of
		// trickle if nobody stops it.
		var took time.Duration
	trickle:
		for i := 0; i < 50; i++ {
			select {
			case took = <-closed:
				break trickle
			case <-time.After(200 * time.Millisecond):
			}
			if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
				took = <-closed
				break
			}
		}
		if took == 0 {
			t.Fatal("a client trickling headers for 10 s was never cut off")
		}
		if took > 5*time.Second {
			t.Errorf("cut off after %v, want about PAGEFLEET_READ_HEADER_TIMEOUT (1s)", took)
		}
		t.Logf("slow client cut off after %v", took.Round(10*time.Millisecond))
		// Everyone else is still served.
		resp, err := http.Get(e.APIURL + "/healthz")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("healthz after the slow client: %v %v", resp, err)
		}
		resp.Body.Close()
	})

	t.Run("body too large unauthenticated", func(t *testing.T) {
		// Authentication comes first: no key, no body read.
		big := bytes.Repeat([]byte("x"), 4<<20)
		resp, err := http.Post(e.APIURL+"/v1/fetch", "application/json", bytes.NewReader(big))
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) || strings.Contains(err.Error(), "broken pipe") || strings.Contains(err.Error(), "reset") {
				t.Logf("the server closed the connection early: %v", err)
				return
			}
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", resp.StatusCode)
		}
	})
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(bufio.NewReader(resp.Body))
	return string(b)
}
