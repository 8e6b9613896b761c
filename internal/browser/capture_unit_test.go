package browser

import (
	"math"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
)

func TestGlobRegexp(t *testing.T) {
	for _, c := range []struct {
		pattern, url string
		want         bool
	}{
		{"*/api/*", "https://shop.example/api/items?page=1", true},
		{"*/api/*", "https://shop.example/static/api.js", false},
		{"*/api/*", "https://shop.example/v2/api/", true},
		{"https://a.example/data.json", "https://a.example/data.json", true},
		{"https://a.example/data.json", "https://a.example/data.json?x=1", false},
		{"*.json", "https://a.example/x.json", true},
		{"*.json", "https://a.example/xjson", false}, // "." is a dot, not any character
		{"*", "anything", true},
		{"*(x)[y]+*", "https://a.example/(x)[y]+z", true},
	} {
		re, err := globRegexp(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got := re.MatchString(c.url); got != c.want {
			t.Errorf("%q on %q: %v, want %v", c.pattern, c.url, got, c.want)
		}
	}
}

func TestSafeFilename(t *testing.T) {
	for in, want := range map[string]string{
		"report.csv":             "report.csv",
		"../../etc/passwd":       "passwd",
		`..\..\windows\x.exe`:    "x.exe",
		"":                       "download",
		"..":                     "download",
		"/":                      "download",
		"bad\xffname.txt":        "bad_name.txt",
		"dir/sub/r\u00e9sum.pdf": "r\u00e9sum.pdf",
	} {
		if got := safeFilename(in); got != want {
			t.Errorf("safeFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestConsoleBounds(t *testing.T) {
	r := newRecorder(Request{Diagnostics: true}, "main")
	long := make([]byte, 5000)
	for i := range long {
		long[i] = 'x'
	}
	for range 500 {
		r.addMessageLocked("log", string(long))
	}
	total := 0
	for _, m := range r.messages {
		total += len(m.Text)
		if len(m.Text) > maxConsoleText+len("…") {
			t.Fatalf("a message of %d bytes", len(m.Text))
		}
	}
	if total > maxConsoleBytes || len(r.messages) == 0 || len(r.messages) > maxConsole {
		t.Errorf("%d messages of %d bytes", len(r.messages), total)
	}
}

func TestHAREntryTimesAddUp(t *testing.T) {
	h := &harRequest{
		wall: time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC), ts: 100, end: 100.5, received: 2048,
		req: &network.Request{Method: "GET", URL: "https://a.example/api?b=2&a=1", Headers: network.Headers{"Accept": "*/*"}},
		resp: &network.Response{Status: 500, Protocol: "h2", MimeType: "application/json", Headers: network.Headers{"Content-Type": "application/json"},
			Timing: &network.ResourceTiming{RequestTime: 100.1, SendStart: 10, SendEnd: 12, ReceiveHeadersEnd: 112}},
	}
	e := h.entry()
	sum := e.Timings.Send + e.Timings.Wait + e.Timings.Receive
	if e.Timings.Blocked != nil {
		sum += *e.Timings.Blocked
	}
	if math.Abs(e.Time-500) > 0.01 || math.Abs(sum-e.Time) > 0.01 {
		t.Errorf("time %v, timings %+v (sum %v)", e.Time, e.Timings, sum)
	}
	if e.StartedDateTime != "2026-12-08T03:00:00.000Z" || e.Response.Status != 500 || e.Response.StatusText != "Internal Server Error" ||
		e.Response.HTTPVersion != "HTTP/2.0" || e.Response.BodySize != 2048 || len(e.Request.QueryString) != 2 || e.Request.QueryString[0].Name != "a" {
		t.Errorf("entry %+v request %+v response %+v", e, e.Request, e.Response)
	}
}
