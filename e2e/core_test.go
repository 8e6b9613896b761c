package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"image/png"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

func TestCorePipeline(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 4})
	site := NewSite(t, nil)

	t.Run("js rendered vs plain", func(t *testing.T) {
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "render_js": true, "output": []string{"html", "markdown"}})
		if r.Status != spec.StatusSucceeded {
			t.Fatalf("rendered: %+v", r.Error)
		}
		if !contains(r.Result.HTML, "rendered-by-javascript") || !contains(r.Result.Markdown, "rendered-by-javascript") {
			t.Fatalf("rendered html/markdown lacks the script's text: %v", r.Result.Markdown)
		}
		p := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "output": []string{"html", "markdown"}})
		if p.Status != spec.StatusSucceeded {
			t.Fatalf("plain: %+v", p.Error)
		}
		if contains(p.Result.Markdown, "rendered-by-javascript") || !contains(p.Result.Markdown, "Static heading") {
			t.Fatalf("plain markdown should have the static text only: %q", *p.Result.Markdown)
		}
		if p.Attempts != 1 || p.StartedAt == nil || p.FinishedAt == nil {
			t.Fatalf("attempts/timestamps: %+v", p)
		}
	})

	t.Run("article outputs", func(t *testing.T) {
		r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/article", "render_js": true,
			"output":  []string{"markdown", "links", "metadata", "text", "screenshot"},
			"actions": []map[string]any{{"type": "evaluate", "script": "[document.documentElement.scrollWidth, document.documentElement.scrollHeight]"}}})
		if r.Status != spec.StatusSucceeded {
			t.Fatalf("%+v", r.Error)
		}
		md := *r.Result.Markdown
		for _, want := range []string{"# Fixture Article", "## Data", "| Name", "| Apple", "(" + site.URL + "/docs/page?x=1", "(https://other.example/abs)"} {
			if !strings.Contains(md, want) {
				t.Errorf("markdown lacks %q:\n%s", want, md)
			}
		}
		want := []string{site.URL + "/nav-only", site.URL + "/docs/page?x=1", "https://other.example/abs"}
		if strings.Join(r.Result.Links, " ") != strings.Join(want, " ") {
			t.Errorf("links = %v, want %v", r.Result.Links, want)
		}
		var meta map[string]any
		json.Unmarshal(r.Result.Metadata, &meta)
		if meta["title"] != "The Article" || meta["description"] != "An article about fixtures." || meta["language"] != "en" {
			t.Errorf("metadata = %v", meta)
		}
		img, err := png.Decode(bytes.NewReader(r.Result.Screenshot))
		if err != nil {
			t.Fatalf("screenshot is not a PNG: %v", err)
		}
		var size [2]int
		json.Unmarshal(r.Result.Actions[0].Result, &size)
		if img.Bounds().Dx() != size[0] || img.Bounds().Dy() < size[1] || size[0] < 500 {
			t.Errorf("screenshot %v, page %v", img.Bounds().Size(), size)
		}
		// the JSON on the wire is base64
		var raw map[string]any
		e.Do("GET", "/v1/jobs/"+r.ID, keyA, nil, &raw)
		s, _ := raw["result"].(map[string]any)["screenshot"].(string)
		if _, err := base64.StdEncoding.DecodeString(s); err != nil || len(s) < 100 {
			t.Errorf("screenshot on the wire is not base64")
		}
	})

	t.Run("404 target is a succeeded job", func(t *testing.T) {
		for _, render := range []bool{false, true} {
			r := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/missing", "render_js": render})
			if r.Status != spec.StatusSucceeded || r.Result.StatusCode != 404 {
				t.Fatalf("render=%v: status %s code %d err %+v", render, r.Status, r.Result.StatusCode, r.Error)
			}
		}
	})

	t.Run("unreachable hosts fail with distinct codes", func(t *testing.T) {
		closed := freeAddr(t)
		for _, render := range []bool{false, true} {
			r := e.Run(keyA, "fetch", map[string]any{"url": "http://" + closed + "/", "render_js": render, "timeout_ms": 10000})
			if r.Status != spec.StatusFailed || r.Error == nil || r.Error.Code != spec.CodeConnectionRefused {
				t.Errorf("render=%v closed port: %s %+v", render, r.Status, r.Error)
			}
			d := e.Run(keyA, "fetch", map[string]any{"url": "http://no-such-host.invalid/", "render_js": render, "timeout_ms": 10000})
			if d.Status != spec.StatusFailed || d.Error == nil || d.Error.Code != spec.CodeDNSFailure {
				t.Errorf("render=%v dns: %s %+v", render, d.Status, d.Error)
			}
		}
	})

	t.Run("validation", func(t *testing.T) {
		cases := []struct {
			body  string
			field string
		}{
			{`{"url":"not a url"}`, "url"},
			{`{"url":"ftp://example.com/x"}`, "url"},
			{`{"url":"http://example.com","output":["pdf"]}`, "output[0]"},
			{`{"url":"http://example.com","actions":[{"type":"click","selector":"a"}]}`, "actions"},
			{`{"url":"http://user:pw@example.com"}`, "url"},
			{`{"url":"http://example.com","output":["json"]}`, "extract"},
			{`{"url":"http://example.com","session":{"id":"bad id!"}}`, "session.id"},
			{`{"url":"http://example.com","wait_until":"never"}`, "wait_until"},
			{`{"url":"http://example.com","bogus":1}`, "bogus"},
		}
		for _, c := range cases {
			var p struct {
				Code   string            `json:"code"`
				Errors []spec.FieldError `json:"errors"`
			}
			resp := e.Do("POST", "/v1/fetch", keyA, c.body, &p)
			if resp.StatusCode != 422 || resp.Header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("%s: %d %s", c.body, resp.StatusCode, resp.Header.Get("Content-Type"))
				continue
			}
			found := false
			for _, fe := range p.Errors {
				found = found || fe.Field == c.field
			}
			if !found {
				t.Errorf("%s: errors %+v do not name %q", c.body, p.Errors, c.field)
			}
		}
		if resp := e.Do("POST", "/v1/fetch", keyA, `{"url":`, nil); resp.StatusCode != 400 {
			t.Errorf("malformed json: %d", resp.StatusCode)
		}
		big := `{"url":"http://example.com/` + strings.Repeat("a", 2<<20) + `"}`
		if resp := e.Do("POST", "/v1/fetch", keyA, big, nil); resp.StatusCode != 413 {
			t.Errorf("big body: %d", resp.StatusCode)
		}
	})

	t.Run("auth and tenant scoping", func(t *testing.T) {
		if resp := e.Do("POST", "/v1/fetch", "", `{"url":"http://example.com"}`, nil); resp.StatusCode != 401 {
			t.Errorf("no key: %d", resp.StatusCode)
		}
		if resp := e.Do("GET", "/v1/jobs", "wrong-key-123", nil, nil); resp.StatusCode != 401 {
			t.Errorf("bad key: %d", resp.StatusCode)
		}
		id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain"})
		if resp := e.Do("GET", "/v1/jobs/"+id, keyB, nil, nil); resp.StatusCode != 404 {
			t.Errorf("other tenant's job: %d", resp.StatusCode)
		}
		if resp := e.Do("DELETE", "/v1/jobs/"+id, keyB, nil, nil); resp.StatusCode != 404 {
			t.Errorf("other tenant's cancel: %d", resp.StatusCode)
		}
		e.Wait(keyA, id, 30*time.Second)
	})

	t.Run("idempotency, wait, list, cancel", func(t *testing.T) {
		body := map[string]any{"url": site.URL + "/plain"}
		var a1, a2 map[string]any
		r1 := e.Do("POST", "/v1/fetch", keyA, body, &a1, "Idempotency-Key", "k-123")
		r2 := e.Do("POST", "/v1/fetch", keyA, body, &a2, "Idempotency-Key", "k-123")
		if r1.StatusCode != 202 || r2.StatusCode != 202 || a1["id"] != a2["id"] {
			t.Fatalf("idempotent repeat: %v %v", a1, a2)
		}
		if r1.Header.Get("Location") != "/v1/jobs/"+a1["id"].(string) {
			t.Errorf("Location = %q", r1.Header.Get("Location"))
		}
		var j spec.Job
		if resp := e.Do("POST", "/v1/fetch?wait=30s", keyA, body, &j); resp.StatusCode != 200 || j.Status != spec.StatusSucceeded {
			t.Fatalf("?wait: %d %+v", resp.StatusCode, j)
		}
		// cancel a slow job while it runs; a finished one is 409
		id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/slow?d=20s", "render_js": true})
		deadline := time.Now().Add(20 * time.Second)
		for site.Hits("/slow") == 0 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if resp := e.Do("DELETE", "/v1/jobs/"+id, keyA, nil, nil); resp.StatusCode != 200 {
			t.Fatalf("cancel: %d", resp.StatusCode)
		}
		c := e.Wait(keyA, id, 10*time.Second)
		if c.Status != spec.StatusCancelled {
			t.Fatalf("cancelled job status %s", c.Status)
		}
		if resp := e.Do("DELETE", "/v1/jobs/"+id, keyA, nil, nil); resp.StatusCode != 409 {
			t.Errorf("second cancel: %d", resp.StatusCode)
		}
		// Once no task is left, nothing can write the job again.
		e.Drain(t, 30*time.Second)
		if got := e.Wait(keyA, id, time.Second); got.Status != spec.StatusCancelled {
			t.Errorf("a cancelled job changed to %s", got.Status)
		}
		// list with paging
		seen := map[string]bool{}
		cursor := ""
		for i := 0; i < 20; i++ {
			var pg struct {
				Data       []spec.Job `json:"data"`
				NextCursor string     `json:"next_cursor"`
			}
			e.Do("GET", "/v1/jobs?limit=2&cursor="+cursor, keyA, nil, &pg)
			for _, j := range pg.Data {
				if seen[j.ID] {
					t.Fatalf("job %s listed twice", j.ID)
				}
				seen[j.ID] = true
			}
			if pg.NextCursor == "" {
				break
			}
			cursor = pg.NextCursor
		}
		if !seen[id] || !seen[a1["id"].(string)] || len(seen) < 8 {
			t.Errorf("listing saw %d jobs", len(seen))
		}
		var pg struct {
			Data []spec.Job `json:"data"`
		}
		e.Do("GET", "/v1/jobs?status=cancelled", keyA, nil, &pg)
		if len(pg.Data) != 1 || pg.Data[0].ID != id {
			t.Errorf("status filter: %+v", pg.Data)
		}
	})

	t.Run("metrics", func(t *testing.T) {
		for _, u := range []string{e.APIURL + "/metrics", "http://" + e.WorkerAddr(0) + "/metrics"} {
			resp, err := http.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for _, m := range []string{"pagefleet_"} {
				if !strings.Contains(string(b), m) {
					t.Errorf("%s lacks %s", u, m)
				}
			}
		}
	})
}

// The API is killed between submit and poll: the job completes and is
// readable after the restart. Chrome is killed mid-job: the job succeeds on
// retry. After the worker stops, none of its chromium processes remain.
func TestRestartsAndCrashes(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	site := NewSite(t, nil)
	id := e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/slow?d=1500ms", "render_js": true})
	e.KillAPI()
	// The job ends while no API runs; then a new API must read it.
	if !waitFor(60*time.Second, func() bool {
		return workerLogged(e.WorkerLog(0), "job succeeded", id) || workerLogged(e.WorkerLog(0), "job failed", id)
	}) {
		t.Fatalf("job %s did not end on the worker while the API was down", id)
	}
	e.StartAPI()
	if j := e.Wait(keyA, id, 60*time.Second); j.Status != spec.StatusSucceeded {
		t.Fatalf("job after API restart: %s %+v", j.Status, j.Error)
	}

	// Kill the browser process while the job runs.
	id = e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/slow?d=4s", "render_js": true, "output": []string{"html"}})
	deadline := time.Now().Add(30 * time.Second)
	for site.Hits("/slow") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	killed := 0
	for _, pid := range e.WorkerChromium(0) {
		if isBrowserProcess(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			killed++
		}
	}
	if killed == 0 {
		t.Fatal("found no chromium browser process of the worker to kill")
	}
	j := e.Wait(keyA, id, 90*time.Second)
	if j.Status != spec.StatusSucceeded || j.Attempts < 2 || !contains(j.Result.HTML, "slow page done") {
		t.Fatalf("job after browser kill: %s attempts=%d %+v", j.Status, j.Attempts, j.Error)
	}
	// the pool recovered: another rendered job works
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/js", "render_js": true}); j.Status != spec.StatusSucceeded {
		t.Fatalf("after recovery: %+v", j.Error)
	}
	e.StopWorker(0, syscall.SIGTERM)
	// The worker has exited, so none of its chromium processes can start
	// any more; one that is still exiting has half a second.
	var left []int
	if !waitFor(500*time.Millisecond, func() bool { left = e.WorkerChromium(0); return len(left) == 0 }) {
		t.Fatalf("chromium processes left after the worker stopped: %v", left)
	}
}

// workerLogged reports whether log has a line with message msg about job id.
func workerLogged(log, msg, id string) bool {
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, `"msg":"`+msg+`"`) && strings.Contains(l, `"job":"`+id+`"`) {
			return true
		}
	}
	return false
}

// isBrowserProcess reports whether pid is a Chrome browser (not a renderer,
// GPU or utility) process.
func isBrowserProcess(pid int) bool {
	cl := readCmdline(pid)
	return !strings.Contains(cl, "--type=")
}

// Two workers against one Redis share the work; each job runs once.
func TestTwoWorkersShareWork(t *testing.T) {
	e := Start(t, Options{Workers: 2, Concurrency: 2})
	site := NewSite(t, nil)
	var ids []string
	for i := 0; i < 30; i++ {
		ids = append(ids, e.Submit(keyA, "fetch", map[string]any{"url": site.URL + "/plain?n=" + itoa(i)}))
	}
	for _, id := range ids {
		if j := e.Wait(keyA, id, 60*time.Second); j.Status != spec.StatusSucceeded || j.Attempts != 1 {
			t.Fatalf("job %s: %s attempts %d", id, j.Status, j.Attempts)
		}
	}
	perQuery := map[string]int{}
	for _, h := range site.Log() {
		perQuery[h.Path]++
	}
	for i := 0; i < 30; i++ {
		if n := perQuery["/plain?n="+itoa(i)]; n != 1 {
			t.Errorf("page %d fetched %d times", i, n)
		}
	}
	// A worker logs "job succeeded" right after it wrote the outcome the
	// test just read: wait for the lines.
	ran := [2]int{}
	waitFor(10*time.Second, func() bool {
		for w := 0; w < 2; w++ {
			ran[w] = strings.Count(e.WorkerLog(w), `"msg":"job succeeded"`)
		}
		return ran[0]+ran[1] >= 30
	})
	if ran[0] == 0 || ran[1] == 0 || ran[0]+ran[1] != 30 {
		t.Errorf("jobs per worker = %v", ran)
	}
}
