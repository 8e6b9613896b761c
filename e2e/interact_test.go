package e2e

import (
	"bytes"
	"encoding/json"
	"image/png"
	"net/http"
	"strings"
	"testing"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

var interactPages = map[string]http.HandlerFunc{
	"/ui": html(`<!doctype html><html><body style="margin:0">
<div id="late-slot"></div>
<button id="soon" disabled>Soon</button>
<p id="clicked"></p>
<select id="sel"><option value="a">A</option><option value="b">B</option></select>
<p id="selected"></p><img id="logo" src="/logo.png" alt="logo">
<div id="hov" style="width:200px;height:40px;background:#eee">hover me</div><p id="hovered"></p>
<form id="f" action="/submitted" method="get"><input id="q" name="q"></form>
<script>
setTimeout(() => { const b = document.createElement('button'); b.id = 'late'; b.textContent = 'late';
  b.onclick = () => { document.getElementById('clicked').textContent += 'late;'; };
  document.getElementById('late-slot').appendChild(b); }, 1500);
setTimeout(() => { document.getElementById('soon').disabled = false; }, 1000);
document.getElementById('soon').onclick = () => { document.getElementById('clicked').textContent += 'soon;'; };
document.getElementById('sel').onchange = (e) => { document.getElementById('selected').textContent = 'selected:' + e.target.value; };
document.getElementById('hov').onmouseenter = () => { document.getElementById('hovered').textContent = 'hovered'; };
</script></body></html>`),
	"/submitted": func(w http.ResponseWriter, r *http.Request) {
		html(`<!doctype html><html><body><p id="result">you searched: `+r.URL.Query().Get("q")+`</p><a id="more" href="/feed">feed</a></body></html>`)(w, r)
	},
	"/feed": html(`<!doctype html><html><body><div id="list"></div><script>
const list = document.getElementById('list'); let n = 0;
function add(k) { for (let i = 0; i < k; i++) { const d = document.createElement('div'); d.className = 'item'; d.style.height = '100px'; d.textContent = 'item ' + (n++); list.appendChild(d); } }
add(20);
let loading = false;
window.addEventListener('scroll', () => {
  if (loading || window.innerHeight + window.scrollY < document.body.scrollHeight - 50) return;
  loading = true; setTimeout(() => { add(10); loading = false; }, 200);
});
</script></body></html>`),
}

func TestInteractActions(t *testing.T) {
	e := Start(t, Options{Workers: 1})
	site := NewSite(t, interactPages)

	j := e.Run(keyA, "interact", map[string]any{
		"url": site.URL + "/ui",
		"actions": []map[string]any{
			{"type": "click", "selector": "#late"},               // 0: appears 1.5 s after load
			{"type": "click", "selector": "#soon"},               // 1: disabled for 1 s
			{"type": "select", "selector": "#sel", "value": "b"}, // 2
			{"type": "hover", "selector": "#hov"},                // 3
			{"type": "evaluate", "script": "({clicked: document.getElementById('clicked').textContent, selected: document.getElementById('selected').textContent, hovered: document.getElementById('hovered').textContent, n: 1 + 1})"}, // 4
			{"type": "screenshot"},                                                      // 5
			{"type": "type", "selector": "#q", "value": "hello"},                        // 6
			{"type": "press", "key": "Enter"},                                           // 7: submits the form
			{"type": "wait_for", "selector": "#result"},                                 // 8
			{"type": "click", "selector": "#more"},                                      // 9: navigates
			{"type": "wait_for", "selector": ".item"},                                   // 10
			{"type": "scroll", "to": "bottom"},                                          // 11: loads more
			{"type": "wait", "ms": 300},                                                 // 12
			{"type": "evaluate", "script": "document.querySelectorAll('.item').length"}, // 13
			{"type": "navigate", "url": site.URL + "/plain"},                            // 14
			{"type": "wait_for", "selector": "#gone", "state": "detached"},              // 15
		},
		"output": []string{"html"},
	})
	if j.Status != spec.StatusSucceeded {
		t.Fatalf("interact: %s %+v actions=%+v", j.Status, j.Error, j.Result)
	}
	acts := j.Result.Actions
	if len(acts) != 16 {
		t.Fatalf("%d action entries", len(acts))
	}
	for i, a := range acts {
		if a.Index != i || a.Status != "ok" {
			t.Errorf("action %d: %+v", i, a)
		}
	}
	var ev map[string]any
	json.Unmarshal(acts[4].Result, &ev)
	if ev["clicked"] != "late;soon;" || ev["selected"] != "selected:b" || ev["hovered"] != "hovered" || ev["n"] != float64(2) {
		t.Errorf("evaluate object = %s", acts[4].Result)
	}
	if _, err := png.Decode(bytes.NewReader(acts[5].Screenshot)); err != nil {
		t.Errorf("step screenshot: %v", err)
	}
	var items float64
	json.Unmarshal(acts[13].Result, &items)
	if items <= 20 {
		t.Errorf("scroll to bottom loaded no more items: %v", items)
	}
	if !contains(j.Result.HTML, "plain body") || !strings.HasSuffix(j.Result.FinalURL, "/plain") {
		t.Errorf("final page: %s", j.Result.FinalURL)
	}
	// The screenshot action needs the page's images: nothing was blocked.
	if site.Hits("/logo.png") != 1 {
		t.Errorf("the image was requested %d times by a job with a screenshot action, want 1", site.Hits("/logo.png"))
	}
	if site.Hits("/submitted") != 1 {
		t.Errorf("the form was submitted %d times", site.Hits("/submitted"))
	}

	// A selector that never appears fails the job at that step.
	f := e.Run(keyA, "interact", map[string]any{
		"url": site.URL + "/ui",
		"actions": []map[string]any{
			{"type": "type", "selector": "#q", "value": "x"},
			{"type": "click", "selector": "#never", "timeout_ms": 1000},
			{"type": "click", "selector": "#soon"},
		},
		"output": []string{"html", "screenshot"},
	})
	if f.Status != spec.StatusFailed || f.Error == nil || f.Error.Code != spec.CodeActionFailed || f.Error.Action == nil || *f.Error.Action != 1 {
		t.Fatalf("failing selector: %s %+v", f.Status, f.Error)
	}
	if len(f.Result.Actions) != 2 || f.Result.Actions[0].Status != "ok" || f.Result.Actions[1].Status != "failed" || f.Result.Actions[1].Error == "" {
		t.Errorf("actions of the failed job: %+v", f.Result.Actions)
	}
	if !contains(f.Result.HTML, `id="q"`) || len(f.Result.Screenshot) == 0 {
		t.Errorf("a failed job still describes the page")
	}
}

func TestInteractValidation(t *testing.T) {
	e := Start(t, Options{Workers: 1})
	cases := []struct {
		actions string
		field   string
	}{
		{`[]`, "actions"},
		{`[{"type":"jump"}]`, "actions[0].type"},
		{`[{"type":"click"}]`, "actions[0].selector"},
		{`[{"type":"wait","ms":1},{"type":"type","selector":"#a"}]`, "actions[1].value"},
		{`[{"type":"press"}]`, "actions[0].key"},
		{`[{"type":"wait_for","selector":"a","state":"gone"}]`, "actions[0].state"},
		{`[{"type":"evaluate"}]`, "actions[0].script"},
		{`[{"type":"navigate","url":"javascript:alert(1)"}]`, "actions[0].url"},
		{`[{"type":"scroll"}]`, "actions[0].selector"},
		{`[{"type":"wait","ms":-5}]`, "actions[0].ms"},
		{`[` + strings.Repeat(`{"type":"wait","ms":1},`, 50) + `{"type":"wait","ms":1}]`, "actions"},
	}
	for _, c := range cases {
		var p struct {
			Errors []spec.FieldError `json:"errors"`
		}
		resp := e.Do("POST", "/v1/interact", keyA, `{"url":"http://example.com","actions":`+c.actions+`}`, &p)
		found := false
		for _, fe := range p.Errors {
			found = found || fe.Field == c.field
		}
		if resp.StatusCode != 422 || !found {
			t.Errorf("%s: %d %+v (want %s)", c.actions, resp.StatusCode, p.Errors, c.field)
		}
	}
	var lst struct {
		Data []spec.Job `json:"data"`
	}
	e.Do("GET", "/v1/jobs", keyA, nil, &lst)
	if len(lst.Data) != 0 {
		t.Errorf("invalid requests created jobs: %d", len(lst.Data))
	}
}
