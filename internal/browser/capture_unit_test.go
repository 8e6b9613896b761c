package browser

import "testing"

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
