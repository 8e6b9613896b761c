package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/pagefleet/pagefleet/pkg/spec"
)

// welcomePage is the fixture the console test fetches (and the committed
// screenshot shows).
const welcomePage = `<!doctype html><html lang="en"><head><title>Acme Docs: Getting started</title>
<style>body{font-family:sans-serif;margin:0;background:#fbfaf7;color:#222}header{background:#0f4c5c;color:#fff;padding:14px 28px;font-size:18px}
main{padding:12px 28px}.tip{border-left:4px solid #e36414;background:#fff3e6;padding:8px 12px}</style></head>
<body><header><strong>Acme Docs</strong></header><main><h1>Hello from the fixture</h1>
<p>This page was rendered by <strong>pagefleet</strong> in headless Chrome.</p>
<h2>Getting started</h2><ol><li>Create an API key.</li><li>Submit a fetch job.</li><li>Read the Markdown.</li></ol>
<p class="tip">Tip: sessions keep you logged in between jobs.</p></main></body></html>`

// TestConsolePage uses the console page at / in Chrome: it pastes a key,
// submits a rendered fetch with a screenshot and sees the result appear.
// With UPDATE_DOCS=1 it writes the page's screenshot to docs/console.png.
func TestConsolePage(t *testing.T) {
	e := Start(t, Options{Workers: 1, Concurrency: 2})
	site := NewSite(t, map[string]http.HandlerFunc{"/welcome": html(welcomePage)})
	// Something for the session and batch lists.
	if j := e.Run(keyA, "fetch", map[string]any{"url": site.URL + "/plain", "session": map[string]string{"id": "demo-user"}}); j.Status != spec.StatusSucceeded {
		t.Fatalf("seed job: %+v", j.Error)
	}
	var bat struct {
		ID string `json:"id"`
	}
	if resp := e.Do("POST", "/v1/batches", keyA, map[string]any{"urls": []string{site.URL + "/plain?p=1", site.URL + "/plain?p=2", site.URL + "/article"}}, &bat); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("seed batch: %d", resp.StatusCode)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(1440, 1100),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("proxy-bypass-list", "<-loopback>"),
		chromedp.Flag("disable-features", "Translate,LocalNetworkAccessChecks"),
	)
	if p := os.Getenv("PAGEFLEET_CHROME_PATH"); p != "" {
		opts = append(opts, chromedp.ExecPath(p))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	ctx, cancel := context.WithTimeout(bctx, 2*time.Minute)
	defer cancel()

	js := func(expr string) bool {
		t.Helper()
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		return ok
	}
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(90*time.Second))); err != nil {
			status, _ := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#job-status")))
			problem, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('#submit-error').textContent + ' ' + document.querySelector('#job-error').textContent`))
			t.Fatalf("%s: %v (job status %q, errors %q)", what, err, status, problem)
		}
	}

	// Without a key the lists say so.
	err := chromedp.Do(ctx,
		chromedp.Navigate(e.APIURL+"/"),
		chromedp.WaitVisible(chromedp.CSS("#api-key")),
	)
	if err != nil {
		t.Fatal(err)
	}
	// Paste the key; it is kept in localStorage.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#api-key"), keyA),
		chromedp.Click(chromedp.CSS("#key-form button")),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !js(fmt.Sprintf(`localStorage.getItem('pagefleet.apiKey') === %q`, keyA)) {
		t.Fatal("the key is not in localStorage")
	}
	poll("session list", `document.querySelector('#sessions tbody').textContent.includes('demo-user')`)
	// The batch list refreshes itself while a batch runs.
	poll("batch progress", fmt.Sprintf(`(() => { const t = document.querySelector('#batches tbody').textContent; return t.includes(%q) && t.includes('completed') && t.includes('3/3'); })()`, bat.ID))

	// A request the API refuses shows its problem and the field.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#url"), "ftp://example.com/"),
		chromedp.Click(chromedp.CSS("#submit-job")),
	)
	if err != nil {
		t.Fatal(err)
	}
	poll("validation problem", `(() => { const b = document.querySelector('#submit-error'); return !b.hidden && b.textContent.includes('422') && b.textContent.includes('url'); })()`)

	// A rendered fetch with markdown and a screenshot (the default outputs
	// of the form), in a session.
	err = chromedp.Do(ctx,
		chromedp.SetValue(chromedp.CSS("#url"), site.URL+"/welcome"),
		chromedp.SetValue(chromedp.CSS("#session"), "console-demo"),
		chromedp.Click(chromedp.CSS("#submit-job")),
	)
	if err != nil {
		t.Fatal(err)
	}
	poll("screenshot", `(() => { const i = document.querySelector('#shot img'); return !!i && i.src.startsWith('data:image/png;base64,') && i.complete && i.naturalWidth > 0; })()`)
	poll("markdown", `document.querySelector('#markdown').textContent.includes('Hello from the fixture')`)
	status, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#job-status")))
	if err != nil || status != spec.StatusSucceeded {
		t.Fatalf("job status on the page = %q, %v", status, err)
	}
	if !js(`document.querySelector('#submit-error').hidden && document.querySelector('#job-error').hidden`) {
		t.Error("an error is shown after a successful job")
	}
	// The page shows the job the API has.
	id, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("#job-id")))
	if err != nil {
		t.Fatal(err)
	}
	j := e.Wait(keyA, strings.TrimSpace(id), 10*time.Second)
	if j.Status != spec.StatusSucceeded || j.Session == nil || j.Session.ID != "console-demo" || len(j.Result.Screenshot) == 0 {
		t.Errorf("job %s in the API: %+v", id, j)
	}
	// HTML is shown as text, not markup.
	if !js(`document.querySelector('#html').textContent.includes('<h1>Hello from the fixture</h1>') && document.querySelector('#html').children.length === 0`) {
		t.Error("the HTML pane does not show the escaped HTML")
	}
	poll("job list", fmt.Sprintf(`document.querySelector('#jobs tbody').textContent.includes(%q)`, strings.TrimSpace(id)))

	if os.Getenv("UPDATE_DOCS") == "1" {
		png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("..", "docs", "console.png")
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(out, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s (%d bytes)", out, len(png))
	}
}
