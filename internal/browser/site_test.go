package browser_test

import (
	"encoding/base64"
	"fmt"
	"html"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// site is the fixture web site of the tests.
type site struct {
	*httptest.Server

	mu       sync.Mutex
	requests map[string][]*http.Request // by path
}

// onePixelPNG is a 1×1 transparent PNG.
var onePixelPNG, _ = base64.StdEncoding.DecodeString(
	"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==")

// pages maps paths to static HTML.
var pages = map[string]string{
	"/js": `<!doctype html><html><head><title>JS</title></head><body><div id="app"></div>
<script>document.getElementById('app').textContent = 'rendered by ' + 'javascript';</script></body></html>`,

	"/tall": `<!doctype html><html><body style="margin:0"><div style="height:3000px;background:linear-gradient(red,blue)">tall</div></body></html>`,

	"/wait/dcl": `<!doctype html><html><body><p>dcl</p><img src="/slowimg?ms=2500">
<script>addEventListener('load', () => { document.body.dataset.loaded = 'yes'; });</script></body></html>`,

	"/wait/idle": `<!doctype html><html><body><p>idle</p>
<script>addEventListener('load', () => setTimeout(async () => {
  const r = await fetch('/api/text?ms=3000&text=late+data');
  const p = document.createElement('p'); p.id = 'late'; p.textContent = await r.text(); document.body.appendChild(p);
}, 200));</script></body></html>`,

	"/actions/appear": `<!doctype html><html><body><div id="out">waiting</div>
<script>setTimeout(() => {
  const b = document.createElement('button'); b.id = 'late'; b.textContent = 'late button';
  b.onclick = () => { document.getElementById('out').textContent = 'clicked late button'; };
  document.body.appendChild(b);
}, 1500);</script></body></html>`,

	"/actions/disabled": `<!doctype html><html><body><button id="b" disabled>go</button><div id="out"></div>
<script>const t0 = performance.now();
setTimeout(() => { document.getElementById('b').disabled = false; }, 1000);
document.getElementById('b').addEventListener('click', () => {
  document.getElementById('out').textContent = 'clicked after ' + Math.round(performance.now() - t0);
});</script></body></html>`,

	"/actions/form": `<!doctype html><html><body><form action="/actions/search" method="get">
<input id="q" name="q" autocomplete="off"><button>Go</button></form></body></html>`,

	"/actions/link": `<!doctype html><html><body><p id="here">first page</p><a id="next" href="/actions/next">next</a></body></html>`,

	"/actions/next": `<!doctype html><html><body><p>second page</p>
<script>setTimeout(() => { const d = document.createElement('div'); d.id = 'arrived'; d.textContent = 'arrived'; document.body.appendChild(d); }, 300);</script></body></html>`,

	"/actions/select": `<!doctype html><html><body><select id="s"><option value="a">A</option><option value="b">Bee</option><option value="c">Sea</option></select>
<div id="out"></div><div id="inputs">0</div>
<script>const s = document.getElementById('s');
s.addEventListener('input', () => { const n = document.getElementById('inputs'); n.textContent = String(Number(n.textContent) + 1); });
s.addEventListener('change', () => { document.getElementById('out').textContent = 'chose ' + s.value; });</script></body></html>`,

	"/actions/scroll": `<!doctype html><html><body style="margin:0"><div id="list"></div>
<script>const list = document.getElementById('list');
let next = 0, loading = false;
const add = (n) => { for (let i = 0; i < n; i++) { const d = document.createElement('div'); d.className = 'item'; d.style.height = '100px'; d.textContent = 'item ' + next++; list.appendChild(d); } };
add(20);
addEventListener('scroll', async () => {
  if (loading || innerHeight + scrollY < document.body.scrollHeight - 200) return;
  loading = true;
  const r = await fetch('/api/items?from=' + next);
  const n = Number(await r.text());
  add(n);
  loading = false;
});</script></body></html>`,

	"/actions/hover": `<!doctype html><html><body><div id="h" style="width:200px;height:50px;background:#eee">hover me</div><div id="out"></div>
<script>document.getElementById('h').addEventListener('mouseenter', () => { document.getElementById('out').textContent = 'hovered'; });</script></body></html>`,

	"/actions/misc": `<!doctype html><html><body><div id="spinner">loading</div><div id="gone" style="display:none">hidden</div>
<script>setTimeout(() => document.getElementById('spinner').remove(), 500);</script></body></html>`,

	"/block": `<!doctype html><html><body><img id="i" src="/img/blocked.png"
onload="document.body.dataset.img='loaded'" onerror="document.body.dataset.img='failed'"></body></html>`,

	"/doc.png": `<!doctype html><html><body><p id="doc">a page at a png path</p><img src="/img/in-doc.png"></body></html>`,

	"/block-unnamed": `<!doctype html><html><head><style>@font-face { font-family: F; src: url(/font/f.woff2) format("woff2"); }
body { font-family: F, sans-serif; }</style></head><body>
<img id="i" src="/noext-img?v=1" onload="document.body.dataset.img='loaded'" onerror="document.body.dataset.img='failed'">
<p>text</p></body></html>`,

	"/block-svg": `<!doctype html><html><body>
<img id="s" src="/svg/logo.svg" onload="document.body.dataset.svg='loaded'" onerror="document.body.dataset.svg='failed'">
</body></html>`,

	"/state/set": `<!doctype html><html><body><div id="status">working</div>
<script>
localStorage.setItem('lk', 'local value');
sessionStorage.setItem('sk', 'session value');
const open = indexedDB.open('pf', 3);
open.onupgradeneeded = () => {
  const db = open.result;
  const st = db.createObjectStore('things', {keyPath: 'id'});
  st.createIndex('byName', 'name', {unique: false});
  db.createObjectStore('plain', {autoIncrement: true});
};
open.onsuccess = () => {
  const db = open.result;
  const tx = db.transaction(['things', 'plain'], 'readwrite');
  tx.objectStore('things').put({id: 1, name: 'one', when: new Date(1700000000000),
    map: new Map([['a', 1], ['b', [2, 3]]]), bytes: new Uint8Array([1, 2, 3]), big: 12345678901234567890n,
    set: new Set(['x']), nothing: undefined, nested: {deep: [new Date(0)]}});
  tx.objectStore('plain').put('a string value');
  tx.oncomplete = () => { const d = document.createElement('div'); d.id = 'saved'; d.textContent = 'saved'; document.body.appendChild(d); };
};
</script></body></html>`,

	"/state/check": `<!doctype html><html><body>
<div id="ls"></div><div id="ss"></div><div id="idb"></div>
<script>
document.getElementById('ls').textContent = 'ls=' + localStorage.getItem('lk');
document.getElementById('ss').textContent = 'ss=' + sessionStorage.getItem('sk');
const done = (text) => { const d = document.getElementById('idb'); d.textContent = text; d.dataset.done = 'yes'; };
indexedDB.databases().then((dbs) => {
  if (!dbs.some((d) => d.name === 'pf')) return done('idb=none');
  const open = indexedDB.open('pf');
  open.onsuccess = () => {
    const db = open.result;
    const get = db.transaction('things').objectStore('things').get(1);
    get.onsuccess = () => {
      const v = get.result;
      if (!v) return done('idb=empty v' + db.version);
      done(['idb', 'v' + db.version, v.when instanceof Date && v.when.getTime(), v.map instanceof Map && v.map.get('b').join('+'),
        v.bytes instanceof Uint8Array && v.bytes.join('.'), typeof v.big, v.set instanceof Set && v.set.has('x'),
        'nothing' in v && v.nothing === undefined, v.nested.deep[0] instanceof Date,
        db.transaction('things').objectStore('things').indexNames.contains('byName')].join(' '));
    };
  };
});
</script></body></html>`,
}

// newSite starts the fixture site.
func newSite() *site {
	s := &site{requests: map[string][]*http.Request{}}
	mux := http.NewServeMux()
	for path, body := range pages {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if path == "/state/set" {
				http.SetCookie(w, &http.Cookie{Name: "sid", Value: "secret-" + r.URL.Query().Get("id"), Path: "/", HttpOnly: true})
			}
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			fmt.Fprint(w, body)
		})
	}
	mux.HandleFunc("/notfound", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("X-Fixture", "yes")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprint(w, "<h1>nothing here</h1>")
	})
	mux.HandleFunc("/notfound-empty", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
	})
	mux.HandleFunc("/egress", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Pagefleet-Egress-Error", "blocked_address")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, "blocked by the egress guard")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		sleep(r, r.URL.Query().Get("ms"))
		fmt.Fprint(w, "<!doctype html><html><body>slow</body></html>")
	})
	mux.HandleFunc("/slowimg", func(w http.ResponseWriter, r *http.Request) {
		sleep(r, r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "image/png")
		w.Write(onePixelPNG)
	})
	mux.HandleFunc("/svg/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		fmt.Fprint(w, `<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>`)
	})
	mux.HandleFunc("/noext-img", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(onePixelPNG)
	})
	mux.HandleFunc("/img/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(onePixelPNG)
	})
	mux.HandleFunc("/api/text", func(w http.ResponseWriter, r *http.Request) {
		sleep(r, r.URL.Query().Get("ms"))
		fmt.Fprint(w, r.URL.Query().Get("text"))
	})
	mux.HandleFunc("/api/items", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond)
		fmt.Fprint(w, "20")
	})
	mux.HandleFunc("/actions/search", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><body><h1 id="results">Results for %s</h1></body></html>`, html.EscapeString(r.URL.Query().Get("q")))
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!doctype html><html><body><pre id="al">%s</pre><pre id="x">%s</pre></body></html>`,
			html.EscapeString(r.Header.Get("Accept-Language")), html.EscapeString(r.Header.Get("X-Test")))
	})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path] = append(s.requests[r.URL.Path], r)
		s.mu.Unlock()
		mux.ServeHTTP(w, r)
	}))
	return s
}

// sleep waits for ms milliseconds or until the request ends.
func sleep(r *http.Request, ms string) {
	n, _ := strconv.Atoi(ms)
	select {
	case <-time.After(time.Duration(n) * time.Millisecond):
	case <-r.Context().Done():
	}
}

// seen returns the requests to path, in order, whose query contains query.
func (s *site) seen(path, query string) []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*http.Request
	for _, r := range s.requests[path] {
		if strings.Contains(r.URL.RawQuery, query) {
			out = append(out, r)
		}
	}
	return out
}
