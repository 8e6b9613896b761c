package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// loginApp is the local app of the seed's login workflow: a login form that
// sets an httpOnly cookie, a localStorage token and an IndexedDB record, and
// a protected orders page that shows them only when present.
func loginApp(t testing.TB) *Site {
	return NewSite(t, map[string]http.HandlerFunc{
		"/login": func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				r.ParseForm()
				if r.FormValue("email") != "user@example.com" || r.FormValue("password") != "secret" {
					html(`<html><body><p id="error">wrong credentials</p></body></html>`)(w, r)
					return
				}
				http.SetCookie(w, &http.Cookie{Name: "auth", Value: "tok-user-1", Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 3600})
				http.Redirect(w, r, "/welcome", http.StatusSeeOther)
				return
			}
			html(`<!doctype html><html><body><form method="post" action="/login">
<input id="email" name="email" type="email"><input id="password" name="password" type="password">
<button type="submit">Sign in</button></form></body></html>`)(w, r)
		},
		"/welcome": html(`<!doctype html><html><body><h1>Welcome</h1><div id="slot"></div><script>
localStorage.setItem('token', 'ls-token-42');
const req = indexedDB.open('app', 1);
req.onupgradeneeded = () => req.result.createObjectStore('profile', {keyPath: 'id'});
req.onsuccess = () => {
  const tx = req.result.transaction('profile', 'readwrite');
  tx.objectStore('profile').put({id: 'me', name: 'Ada', since: new Date(Date.UTC(2020, 0, 2))});
  tx.oncomplete = () => { const a = document.createElement('img'); a.className = 'user-avatar'; a.alt = 'avatar';
    a.style.width = '10px'; a.style.height = '10px'; a.style.display = 'inline-block'; document.getElementById('slot').appendChild(a); };
};
</script></body></html>`),
		"/account/orders": func(w http.ResponseWriter, r *http.Request) {
			c, err := r.Cookie("auth")
			if err != nil || c.Value != "tok-user-1" {
				w.WriteHeader(http.StatusUnauthorized)
				html(`<html><body><h1>Please log in</h1></body></html>`)(w, r)
				return
			}
			html(`<!doctype html><html><body><h1>Your orders</h1><p id="server">cookie: ok</p>
<ul><li>ORDER-1001 shipped</li><li>ORDER-1002 processing</li></ul>
<p id="ls"></p><p id="idb"></p>
<script>
const t = localStorage.getItem('token'); if (t) document.getElementById('ls').textContent = 'token: ' + t;
const req = indexedDB.open('app');
req.onsuccess = () => { const db = req.result; if (!db.objectStoreNames.contains('profile')) return;
  const g = db.transaction('profile').objectStore('profile').get('me');
  g.onsuccess = () => { if (g.result) document.getElementById('idb').textContent = 'idb: ' + g.result.name + ' since ' + g.result.since.toISOString().slice(0,10) + ' (' + (g.result.since instanceof Date) + ')'; };
};
</script><script src="/slow.js?ms=400"></script></body></html>`)(w, r)
		},
		"/slow.js": func(w http.ResponseWriter, r *http.Request) {
			d, _ := time.ParseDuration(r.URL.Query().Get("ms") + "ms")
			time.Sleep(d) // a resource as slow as the page asks
			w.Header().Set("Content-Type", "application/javascript")
			w.Write([]byte("window.slowLoaded = true;"))
		},
		"/pixel": func(w http.ResponseWriter, r *http.Request) {
			d, _ := time.ParseDuration(r.URL.Query().Get("ms") + "ms")
			time.Sleep(d) // a resource as slow as the page asks
			w.Header().Set("Content-Type", "image/gif")
			w.Write([]byte("GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"))
		},
		"/read": html(`<html><body><p>nothing changes here</p></body></html>`),
	})
}

// fakeLLM is a local OpenAI-compatible server: it answers with the order ids
// and statuses it finds in the page content it was sent.
type fakeLLM struct {
	*httptest.Server
	mu       sync.Mutex
	requests []map[string]any
}

var orderRe = regexp.MustCompile(`ORDER-(\d+) (\w+)`)

func newFakeLLM(t testing.TB) *fakeLLM {
	f := &fakeLLM{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/chat/completions") {
			http.NotFound(w, r)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req map[string]any
		json.Unmarshal(b, &req)
		f.mu.Lock()
		f.requests = append(f.requests, req)
		f.mu.Unlock()
		var orders []map[string]string
		for _, m := range orderRe.FindAllStringSubmatch(string(b), -1) {
			orders = append(orders, map[string]string{"id": "ORDER-" + m[1], "status": m[2]})
		}
		content, _ := json.Marshal(map[string]any{"orders": orders})
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"id":"x","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":%q},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":20,"total_tokens":120}}`, content)
	}))
	t.Cleanup(f.Close)
	return f
}
