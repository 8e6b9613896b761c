package fetch

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/andybalholm/brotli"

	"github.com/pagefleet/pagefleet/internal/egress"
	"github.com/pagefleet/pagefleet/pkg/spec"
)

func newClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	if cfg.Policy == nil {
		cfg.Policy = &egress.Policy{AllowPrivate: true}
	}
	c := New(cfg)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.ErrorLog = log.New(io.Discard, "", 0)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func port(s *httptest.Server) string {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	return p
}

func wantCode(t *testing.T, err error, code string) {
	t.Helper()
	var se *spec.Error
	if !errors.As(err, &se) {
		t.Fatalf("want *spec.Error %s, got %T %v", code, err, err)
	}
	if se.Code != code {
		t.Fatalf("want %s, got %s: %s", code, se.Code, se.Message)
	}
}

func TestDecompression(t *testing.T) {
	const page = "<html><body>héllo wörld — compressed</body></html>"
	encode := map[string]func([]byte) []byte{
		"gzip": func(b []byte) []byte {
			var buf bytes.Buffer
			w := gzip.NewWriter(&buf)
			_, _ = w.Write(b)
			_ = w.Close()
			return buf.Bytes()
		},
		"br": func(b []byte) []byte {
			var buf bytes.Buffer
			w := brotli.NewWriter(&buf)
			_, _ = w.Write(b)
			_ = w.Close()
			return buf.Bytes()
		},
		"deflate": func(b []byte) []byte {
			var buf bytes.Buffer
			w := zlib.NewWriter(&buf)
			_, _ = w.Write(b)
			_ = w.Close()
			return buf.Bytes()
		},
	}
	var gotAE atomic.Value
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		gotAE.Store(r.Header.Get("Accept-Encoding"))
		enc := strings.TrimPrefix(r.URL.Path, "/")
		body := []byte(page)
		switch enc {
		case "gzip, br":
			body = encode["br"](encode["gzip"](body))
		case "identity":
		default:
			body = encode[enc](body)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Encoding", enc)
		_, _ = w.Write(body)
	})
	c := newClient(t, Config{})
	for _, enc := range []string{"gzip", "br", "deflate", "gzip, br", "identity"} {
		resp, err := c.Do(context.Background(), Request{URL: s.URL + "/" + enc})
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		if resp.Body != page || resp.Binary {
			t.Fatalf("%s: body %q", enc, resp.Body)
		}
		if resp.Headers["content-encoding"] != enc {
			t.Fatalf("%s: headers %v", enc, resp.Headers)
		}
	}
	if gotAE.Load() != "gzip, deflate, br" {
		t.Fatalf("Accept-Encoding %q", gotAE.Load())
	}
	// A corrupt body fails cleanly.
	bad := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "gzip")
		_, _ = w.Write([]byte("not gzip at all"))
	})
	_, err := c.Do(context.Background(), Request{URL: bad.URL})
	wantCode(t, err, spec.CodeNavigationFailed)
}

func TestCharsets(t *testing.T) {
	latin1 := []byte("<html><body>caf\xe9 na\xefve \xbd</body></html>")
	sjis := []byte("<html><body>\x93\xfa\x96\x7b\x8c\xea</body></html>") // 日本語
	metaSJIS := append([]byte(`<html><head><meta charset="shift_jis"></head><body>`), append([]byte("\x93\xfa\x96\x7b\x8c\xea"), "</body></html>"...)...)
	httpEquiv := []byte(`<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"></head><body>caf` + "\xe9" + `</body></html>`)
	bom := append([]byte("\xef\xbb\xbf"), "<p>bom ✓</p>"...)
	png := []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01")
	cases := map[string]struct {
		ct     string
		body   []byte
		want   string
		binary bool
	}{
		"latin1-header": {"text/html; charset=ISO-8859-1", latin1, "<html><body>café naïve ½</body></html>", false},
		"sjis-header":   {"text/html; charset=Shift_JIS", sjis, "<html><body>日本語</body></html>", false},
		"sjis-meta":     {"text/html", metaSJIS, `<html><head><meta charset="shift_jis"></head><body>日本語</body></html>`, false},
		"http-equiv":    {"text/html", httpEquiv, `<html><head><meta http-equiv="Content-Type" content="text/html; charset=iso-8859-1"></head><body>café</body></html>`, false},
		"bom":           {"text/html", bom, "<p>bom ✓</p>", false},
		"json-latin1":   {"application/json; charset=iso-8859-1", []byte(`{"a":"caf` + "\xe9" + `"}`), `{"a":"café"}`, false},
		"no-type-text":  {"", []byte("plain words"), "plain words", false},
		"png":           {"image/png", png, string(png), true},
		"no-type-png":   {"", png, string(png), true},
	}
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		tc := cases[strings.TrimPrefix(r.URL.Path, "/")]
		if tc.ct != "" {
			w.Header().Set("Content-Type", tc.ct)
		} else {
			w.Header()["Content-Type"] = nil // no sniffing by the server
		}
		_, _ = w.Write(tc.body)
	})
	c := newClient(t, Config{})
	for name, tc := range cases {
		resp, err := c.Do(context.Background(), Request{URL: s.URL + "/" + name})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if resp.Body != tc.want || resp.Binary != tc.binary {
			t.Errorf("%s: body %q binary=%t; want %q binary=%t", name, resp.Body, resp.Binary, tc.want, tc.binary)
		}
		if tc.ct == "" && resp.ContentType == "" {
			t.Errorf("%s: no sniffed content type", name)
		}
	}
}

func TestRedirects(t *testing.T) {
	var s *httptest.Server
	s = serve(t, func(w http.ResponseWriter, r *http.Request) {
		var n int
		if _, err := fmt.Sscanf(r.URL.Path, "/hop/%d", &n); err == nil && n > 0 {
			http.Redirect(w, r, fmt.Sprintf("/hop/%d", n-1), http.StatusFound)
			return
		}
		_, _ = io.WriteString(w, "landed")
	})
	c := newClient(t, Config{MaxRedirects: 3})
	resp, err := c.Do(context.Background(), Request{URL: s.URL + "/hop/3"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Body != "landed" || resp.FinalURL != s.URL+"/hop/0" || resp.URL != s.URL+"/hop/3" {
		t.Fatalf("%+v", resp)
	}
	_, err = c.Do(context.Background(), Request{URL: s.URL + "/hop/4"})
	wantCode(t, err, spec.CodeTooManyRedirects)

	// Default limit: 10.
	c10 := newClient(t, Config{})
	if _, err := c10.Do(context.Background(), Request{URL: s.URL + "/hop/10"}); err != nil {
		t.Fatal(err)
	}
	_, err = c10.Do(context.Background(), Request{URL: s.URL + "/hop/11"})
	wantCode(t, err, spec.CodeTooManyRedirects)
}

func TestRedirectToLoopbackBlocked(t *testing.T) {
	var hits atomic.Int64
	tgt := serve(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	pub := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, tgt.URL+"/secret", http.StatusFound)
	}))
	_ = pub.Listener.Close()
	pub.Listener = ln
	pub.Start()
	defer pub.Close()
	// 127.0.0.2 stands in for a public address.
	p := &egress.Policy{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}}
	c := newClient(t, Config{Policy: p})
	_, err = c.Do(context.Background(), Request{URL: pub.URL + "/go"})
	wantCode(t, err, spec.CodeBlockedAddress)
	if !errors.Is(err, err) || hits.Load() != 0 {
		t.Fatalf("target hit %d times", hits.Load())
	}
	_, err = c.Do(context.Background(), Request{URL: tgt.URL})
	wantCode(t, err, spec.CodeBlockedAddress)
	if hits.Load() != 0 {
		t.Fatal("target hit")
	}
}

func TestSizeCap(t *testing.T) {
	big := strings.Repeat("a", 5000)
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Content-Type", "text/plain")
			for i := 0; i < 5; i++ {
				_, _ = io.WriteString(w, big[:1000])
				w.(http.Flusher).Flush()
			}
		case "/gzip-bomb":
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			_, _ = zw.Write([]byte(strings.Repeat("z", 1<<20)))
			_ = zw.Close()
		case "/exact":
			_, _ = io.WriteString(w, big[:4096])
		default:
			_, _ = io.WriteString(w, big)
		}
	})
	c := newClient(t, Config{MaxBodyBytes: 4096})
	for _, p := range []string{"/length", "/chunked", "/gzip-bomb"} {
		_, err := c.Do(context.Background(), Request{URL: s.URL + p})
		wantCode(t, err, spec.CodeResponseTooLarge)
	}
	resp, err := c.Do(context.Background(), Request{URL: s.URL + "/exact"})
	if err != nil || len(resp.Body) != 4096 {
		t.Fatalf("exact size: %v", err)
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			_, _ = io.WriteString(w, "start")
			w.(http.Flusher).Flush()
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)
	c := newClient(t, Config{})
	for _, p := range []string{"/slow-head", "/slow-body"} {
		start := time.Now()
		_, err := c.Do(context.Background(), Request{URL: s.URL + p, Timeout: 200 * time.Millisecond})
		wantCode(t, err, spec.CodeNavigationTimeout)
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("%s: took %v", p, d)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err := c.Do(ctx, Request{URL: s.URL + "/slow-head"})
	wantCode(t, err, spec.CodeNavigationTimeout)

	ctx2, cancel2 := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel2)
	_, err = c.Do(ctx2, Request{URL: s.URL + "/slow-head"})
	wantCode(t, err, spec.CodeCancelled)
}

func TestStatusAndNetworkErrors(t *testing.T) {
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, "<h1>not here</h1>")
	})
	c := newClient(t, Config{})
	resp, err := c.Do(context.Background(), Request{URL: s.URL + "/missing"})
	if err != nil {
		t.Fatalf("404 is no error: %v", err)
	}
	if resp.StatusCode != 404 || resp.Body != "<h1>not here</h1>" || resp.Headers["x-multi"] != "a, b" || resp.ContentType != "text/html" {
		t.Fatalf("%+v", resp)
	}

	_, err = c.Do(context.Background(), Request{URL: "http://no-such-host.invalid/"})
	wantCode(t, err, spec.CodeDNSFailure)

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := ln.Addr().String()
	_ = ln.Close()
	_, err = c.Do(context.Background(), Request{URL: "http://" + closed + "/"})
	wantCode(t, err, spec.CodeConnectionRefused)

	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	ts.Config.ErrorLog = log.New(io.Discard, "", 0)
	ts.StartTLS()
	defer ts.Close()
	_, err = c.Do(context.Background(), Request{URL: ts.URL})
	wantCode(t, err, spec.CodeTLSFailure)

	_, err = c.Do(context.Background(), Request{URL: "ftp://example.com/"})
	wantCode(t, err, spec.CodeNavigationFailed)

	strict := newClient(t, Config{Policy: &egress.Policy{}})
	_, err = strict.Do(context.Background(), Request{URL: s.URL})
	wantCode(t, err, spec.CodeBlockedAddress)
}

func TestRequestHeaders(t *testing.T) {
	var got atomic.Value
	s := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect-away" {
			// localhost is another host than 127.0.0.1: sensitive headers go.
			http.Redirect(w, r, "http://localhost:"+r.URL.Query().Get("port")+"/final", http.StatusFound)
			return
		}
		got.Store(r.Header.Clone())
	})
	c := newClient(t, Config{})
	_, err := c.Do(context.Background(), Request{URL: s.URL + "/", Headers: map[string]string{
		"x-custom": "1", "Accept-Language": "de-DE", "Authorization": "Bearer t", "Host": "evil.example", "accept-encoding": "zstd",
	}})
	if err != nil {
		t.Fatal(err)
	}
	h := got.Load().(http.Header)
	if h.Get("User-Agent") != DefaultUserAgent || h.Get("Accept") != DefaultAccept || h.Get("Accept-Language") != "de-DE" ||
		h.Get("X-Custom") != "1" || h.Get("Authorization") != "Bearer t" || h.Get("Accept-Encoding") != "gzip, deflate, br" {
		t.Fatalf("headers %v", h)
	}
	c2 := newClient(t, Config{UserAgent: "ua/2"})
	_, err = c2.Do(context.Background(), Request{URL: s.URL + "/redirect-away?port=" + port(s), Headers: map[string]string{"Authorization": "Bearer t", "Cookie": "manual=1"}})
	if err != nil {
		t.Fatal(err)
	}
	h = got.Load().(http.Header)
	if h.Get("Authorization") != "" || h.Get("Cookie") != "" || h.Get("User-Agent") != "ua/2" || h.Get("Accept-Language") != DefaultLanguage {
		t.Fatalf("after cross-host redirect: %v", h)
	}
}
